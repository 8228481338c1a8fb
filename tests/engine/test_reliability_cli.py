"""Hostile inputs at the command line, class by class.

Every case exits with code 2 and one sentence that names the file and the
fix; nothing appears under a final name unless the whole set of outputs is
complete; no argument may name another's file; rasters of any orientation
are read right; a stop request is honoured within seconds.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from mobanet.cli import main
from mobanet.evaluate import evaluate
from mobanet.raster import segment
from mobanet.raster.predict import CALL_PIXELS, WindowPredictor
from mobanet.resources import default_model_path
from mobanet.synth import write_scenes

from .mounts import on_tmpfs

ENGINE = Path(__file__).resolve().parents[2] / "engine"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ENGINE)}
MOBANET = [sys.executable, "-m", "mobanet"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict[str, Path]:
    """One 256 px synthetic scene at 0.1 m (what the embedded model was trained on)."""
    entry = write_scenes(tmp_path_factory.mktemp("scene"), 1, 256, seed=7, gsd=0.1, prefix="s")[0]
    files = {kind: entry[kind] for kind in ("optical", "dsm", "labels")}
    files["prediction"] = write_like(entry["labels"].with_name("prediction.tif"), entry["labels"])
    return files


def run_cli(capsys, *args) -> tuple[int, list[str]]:
    """`mobanet ARGS` in this process (its signal handlers restored after); exit code and stderr lines."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    return code, capsys.readouterr().err.splitlines()


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def raster(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    dataset = gdal.Open(str(path))
    return dataset.ReadAsArray(), dataset.GetGeoTransform()


def write_like(path: Path, source: Path, values: np.ndarray | None = None, geotransform=None) -> Path:
    """A copy of ``source`` (a GeoTIFF) with other values and/or another geotransform."""
    dataset = gdal.GetDriverByName("GTiff").CreateCopy(str(path), gdal.Open(str(source)))
    if values is not None:
        dataset.WriteRaster(0, 0, dataset.RasterXSize, dataset.RasterYSize, np.ascontiguousarray(values).tobytes())
    if geotransform is not None:
        dataset.SetGeoTransform(geotransform)
    dataset = None
    return path


def south_up(path: Path, source: Path) -> Path:
    """``source`` stored south-up: rows reversed, positive y pixel size, same place on the ground."""
    values, gt = raster(source)
    height = values.shape[-2]
    return write_like(path, source, values[..., ::-1, :], (gt[0], gt[1], 0.0, gt[3] + height * gt[5], 0.0, -gt[5]))


# -- data loss: write errors are errors, and nothing half-written is committed -------------------------------------

def test_a_file_size_limit_fails_cleanly_and_keeps_the_previous_outputs(tmp_path, scene):
    """GDAL's write error on close (FAT32's 4 GB, ulimit -f) used to be swallowed and the file committed."""
    previous = {name: f"previous {name}".encode() for name in ("out.tif", "out.qml", "conf.tif")}
    for name, data in previous.items():
        (tmp_path / name).write_bytes(data)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    done = subprocess.run([*MOBANET, "segment", "--optical", scene["optical"], "--dsm", scene["dsm"],
                           "--output", tmp_path / "out.tif", "--confidence", tmp_path / "conf.tif"],
                          preexec_fn=limit, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error == (f"error: Writing {tmp_path / 'conf.tif'} failed: the file would exceed the largest file this "
                     "system or file system allows (a file-size limit, or FAT32's 4 GB); write to another file system "
                     "or process a smaller area. Nothing was written under the output names.")
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
    assert {name: (tmp_path / name).read_bytes() for name in previous} == previous and files(tmp_path) == \
        sorted(previous)


WRITERS = {
    "segment": lambda s, out: ["segment", "--optical", s["optical"], "--dsm", s["dsm"], "--output", out / "c.tif",
                               "--confidence", out / "p.tif", "--polygons", out / "c.gpkg"],
    "train": lambda s, out: ["train", "--optical", s["optical"], "--dsm", s["dsm"], "--labels", s["labels"],
                             "--output", out / "m.safetensors", "--epochs", "1", "--iterations", "1",
                             "--batch-size", "2", "--window", "56", "--device", "cpu"],
    "evaluate": lambda s, out: ["evaluate", "--prediction", s["prediction"], "--reference", s["labels"],
                                "--json", out / "m.json", "--report", out / "m.html"],
    "synth": lambda s, out: ["synth", "--output-dir", out / "scenes", "--scenes", "2", "--size", "256"],
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_full_disk_is_one_clear_error_and_leaves_nothing(tmp_path, scene, command):
    """A real full file system (a small tmpfs): exit 2, one sentence naming the file, no partial file left."""
    disk = tmp_path / "disk"
    done, left = on_tmpfs(disk, [*MOBANET, command, *map(str, WRITERS[command](scene, disk)[1:])],
                          size_kb=4 if command == "evaluate" else 96, env=ENV, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: Writing {disk}/") and lines[-1].endswith(
        "failed: the disk is full; free space on it or choose another folder. Nothing was written under the output "
        "names."), lines[-1]
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert left == []


def test_a_disk_filling_during_training_keeps_the_last_complete_epoch(tmp_path, scene):
    """Epoch 1's files fit, epoch 2's do not beside them: epoch 1 stays whole and resumable.

    The disk holds 1.5 times what one epoch leaves (measured first with the same options), so the size follows
    the model the training defaults build."""
    def train_into(folder: Path, epochs: int) -> list:
        return [*MOBANET, "train", "--optical", scene["optical"], "--dsm", scene["dsm"], "--labels", scene["labels"],
                "--output", folder / "m.safetensors", "--epochs", str(epochs), "--iterations", "1", "--batch-size",
                "2", "--window", "56", "--device", "cpu", "--quiet"]

    probe = tmp_path / "probe"
    probe.mkdir()
    assert subprocess.run(train_into(probe, 1), env=ENV, capture_output=True, timeout=600).returncode == 0
    one_epoch = sum(f.stat().st_size for f in probe.rglob("*") if f.is_file())
    disk = tmp_path / "disk"
    train = train_into(disk, 2)
    check = f"""
import json, subprocess, sys
from mobanet.train.state import load_state
from mobanet.modelfile import read_card
done = subprocess.run({[str(a) for a in train]!r}, capture_output=True, text=True)
state = load_state(__import__("pathlib").Path({str(disk / "m.state.safetensors")!r}))
print(json.dumps({{"code": done.returncode, "error": done.stderr.strip().splitlines()[-1], "epoch": state["epoch"],
                  "last_epochs": read_card({str(disk / "m.last.safetensors")!r}).training["epochs_run"],
                  "rows": len(json.load(open({str(disk / "m_logs" / "history.json")!r})))}}))
"""
    done, left = on_tmpfs(disk, [sys.executable, "-c", check], size_kb=int(1.5 * one_epoch / 1024), env=ENV,
                          timeout=900)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["code"] == 2 and report["error"].startswith(f"error: Writing {disk}/")
    assert "the disk is full" in report["error"]
    assert (report["epoch"], report["last_epochs"], report["rows"]) == (1, 1, 1)  # epoch 1, consistent everywhere
    assert left == ["m.last.safetensors", "m.safetensors", "m.state.safetensors", "m_logs"]


# -- one path check: no argument names another's file; outputs are writable files of a known format ------------

CLASHES = {
    "train --init is --output": (
        lambda s, t: ["train", "--optical", s["optical"], "--dsm", s["dsm"], "--labels", s["labels"],
                      "--init", t / "m.safetensors", "--output", t / "m.safetensors"],
        "--init {t}/m.safetensors and --output {t}/m.safetensors are the same file; give each its own file name."),
    "train --init is the last-epoch model": (
        lambda s, t: ["train", "--optical", s["optical"], "--dsm", s["dsm"], "--labels", s["labels"],
                      "--init", t / "m.last.safetensors", "--output", t / "m.safetensors"],
        "--init {t}/m.last.safetensors and the last-epoch model of --output ({t}/m.last.safetensors) are the same "
        "file; give each its own file name."),
    "train labels are the optical image": (
        lambda s, t: ["train", "--optical", s["optical"], "--dsm", s["dsm"], "--labels", s["optical"],
                      "--output", t / "m.safetensors"],
        "--optical {optical} and --labels {optical} are the same file; give each its own file name."),
    "train --log-dir is a file": (
        lambda s, t: ["train", "--optical", s["optical"], "--dsm", s["dsm"], "--labels", s["labels"],
                      "--output", t / "m.safetensors", "--log-dir", t / "notes.txt"],
        "--log-dir {t}/notes.txt is a file, not a folder; give a folder name (it is created if missing)."),
    "train output is not a model file": (
        lambda s, t: ["train", "--optical", s["optical"], "--dsm", s["dsm"], "--labels", s["labels"],
                      "--output", t / "m.pt"],
        "--output {t}/m.pt has an extension mobanet does not write; give a file name ending in .safetensors (a "
        "safetensors model file)."),
    "evaluate --json is --report": (
        lambda s, t: ["evaluate", "--prediction", s["prediction"], "--reference", s["labels"],
                      "--json", t / "r.html", "--report", t / "r.html"],
        "--json {t}/r.html and --report {t}/r.html are the same file; give each its own file name."),
    "segment --output is a folder": (
        lambda s, t: ["segment", "--optical", s["optical"], "--dsm", s["dsm"], "--output", t / "folder.tif"],
        "--output {t}/folder.tif is a folder; give a file name, e.g. {t}/folder.tif/result.tif."),
    "segment --output .png": (
        lambda s, t: ["segment", "--optical", s["optical"], "--dsm", s["dsm"], "--output", t / "x.png"],
        "--output {t}/x.png has an extension mobanet does not write; give a file name ending in .tif or .tiff "
        "(GeoTIFF)."),
    "segment --polygons .shp": (
        lambda s, t: ["segment", "--optical", s["optical"], "--dsm", s["dsm"], "--output", t / "x.tif",
                      "--polygons", t / "x.shp"],
        "--polygons {t}/x.shp has an extension mobanet does not write; give a file name ending in .gpkg "
        "(GeoPackage)."),
    "segment style would overwrite an input": (
        lambda s, t: ["segment", "--optical", s["optical"], "--dsm", s["dsm"], "--mask", t / "x.qml",
                      "--output", t / "x.tif"],
        "--mask {t}/x.qml and the QGIS style of --output ({t}/x.qml) are the same file; give each its own file "
        "name."),
    "evaluate against itself": (
        lambda s, t: ["evaluate", "--prediction", s["labels"], "--reference", s["labels"]],
        "--prediction {labels} and --reference {labels} are the same file; give each its own file name."),
    "segment --mask is the DSM": (
        lambda s, t: ["segment", "--optical", s["optical"], "--dsm", s["dsm"], "--mask", s["dsm"],
                      "--output", t / "x.tif"],
        "--dsm {dsm} and --mask {dsm} are the same file; give each its own file name."),
    "optical is a folder": (
        lambda s, t: ["segment", "--optical", t / "folder.tif", "--dsm", s["dsm"], "--output", t / "x.tif"],
        "Optical raster {t}/folder.tif is a folder, not a raster; give the raster file itself."),
    "weights are a folder": (
        lambda s, t: ["train", "--optical", s["optical"], "--dsm", s["dsm"], "--labels", s["labels"],
                      "--backbone", "dinov2_vits14", "--weights", t / "folder.tif", "--output", t / "m.safetensors"],
        "Backbone weights {t}/folder.tif is a folder; give the weights file itself (a DINOv2 .pth or a timm "
        ".safetensors)."),
    "resume state is a folder": (
        lambda s, t: ["train", "--optical", s["optical"], "--dsm", s["dsm"], "--labels", s["labels"],
                      "--resume", t / "folder.tif", "--output", t / "m.safetensors"],
        "--resume {t}/folder.tif is a folder; give the .state.safetensors file that an interrupted run left beside "
        "its output."),
    "model is a folder": (
        lambda s, t: ["segment", "--optical", s["optical"], "--dsm", s["dsm"], "--model", t / "folder.tif",
                      "--output", t / "x.tif"],
        "Model {t}/folder.tif is a folder; give the .safetensors model file itself."),
}


@pytest.mark.parametrize("case", list(CLASHES))
def test_clashing_or_unwritable_paths_are_refused_before_any_work(tmp_path, scene, capsys, case):
    (tmp_path / "folder.tif").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "x.qml").write_text("<qgis/>")  # someone's style
    before = files(tmp_path)
    arguments, expected = CLASHES[case]
    code, err = run_cli(capsys, *arguments(scene, tmp_path))
    assert code == 2
    assert err == ["error: " + expected.format(t=tmp_path, **scene)]
    assert files(tmp_path) == before and files(tmp_path / "folder.tif") == []


# -- orientation: a south-up raster meets its DSM at the right place ------------------------------------------------

def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


@pytest.fixture(scope="module")
def north_up_result(scene, tmp_path_factory) -> tuple[np.ndarray, float]:
    out = tmp_path_factory.mktemp("north") / "classes.tif"
    segment(scene["optical"], scene["dsm"], out, device="cpu")
    return raster(out)[0], evaluate(out, scene["labels"])["overall_accuracy"]


ORIENTATION_CASES = {
    "south-up optical, north-up DSM": (True, "north-up"),
    "north-up optical, south-up DSM": (False, "south-up"),
    "south-up optical, DSM at another pixel size": (True, "coarse"),
}


@pytest.mark.parametrize("case", list(ORIENTATION_CASES))
def test_any_orientation_gives_the_north_up_result(tmp_path, scene, north_up_result, case):
    """The issue's case (south-up optical, north-up DSM) agreed with the labels at 0.58 instead of about 0.9."""
    optical_south_up, dsm_kind = ORIENTATION_CASES[case]
    optical, labels, dsm = scene["optical"], scene["labels"], scene["dsm"]
    if optical_south_up:
        optical, labels = south_up(tmp_path / "o.tif", optical), south_up(tmp_path / "l.tif", labels)
    if dsm_kind == "south-up":
        dsm = south_up(tmp_path / "d.tif", dsm)
    elif dsm_kind == "coarse":
        dsm = tmp_path / "d.tif"
        gdal.Warp(str(dsm), str(scene["dsm"]), xRes=0.2, yRes=0.2, resampleAlg="average")
    out = tmp_path / "classes.tif"
    result = segment(optical, dsm, out, device="cpu")
    classes, gt = raster(out)
    assert gt == raster(optical)[1] and result["warnings"] == []  # the optical grid, as stored
    upright = classes[::-1] if optical_south_up else classes
    expected, expected_oa = north_up_result
    assert agreement(upright, expected) > (0.97 if dsm_kind == "coarse" else 0.999)
    oa = evaluate(out, labels)["overall_accuracy"]
    assert expected_oa > 0.85 and abs(oa - expected_oa) < 0.02


# -- small DSM coverage is said, in the event stream the plugin reads and in the result ------------------------------

@pytest.mark.parametrize("gaps", ["predict", "nodata"])
def test_a_dsm_covering_a_corner_is_a_warning_with_the_share_and_the_files(tmp_path, scene, gaps):
    corner = tmp_path / "corner_dsm.tif"
    gdal.Translate(str(corner), str(scene["dsm"]), srcWin=[0, 0, 26, 26])  # about 1 % of the optical raster
    chosen = [] if gaps == "predict" else ["--dsm-gaps", gaps]  # predict is the default
    done = subprocess.run([*MOBANET, "segment", "--json-progress", "--optical", scene["optical"], "--dsm", corner,
                           *chosen, "--output", tmp_path / "out.tif"], capture_output=True, text=True, env=ENV,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    rest = ("is predicted from the optical image alone (less accurate)" if gaps == "predict"
            else "gets no class (nodata)")
    expected = (f"The DSM {corner} covers only 1.0 % of the optical raster {scene['optical']}; the rest {rest}. "
                "Give a DSM of the whole area.")
    assert warnings == [expected]
    result = events[-1]
    assert result["event"] == "result" and result["warnings"] == [expected]
    assert result["dsm_coverage"] == pytest.approx(26 * 26 / 256 ** 2, abs=1e-3)
    if gaps == "predict":
        assert result["valid_fraction"] > 0.9  # the optical image alone classifies the rest
    else:
        assert result["valid_fraction"] < 0.02


# -- bounded work per model call: no hang, a stop request is honoured within seconds --------------------------------

def test_a_huge_window_is_bounded_by_the_scene(tmp_path, scene):
    small = tmp_path / "small.tif"
    gdal.Translate(str(small), str(scene["optical"]), srcWin=[0, 0, 128, 128])
    started = time.perf_counter()
    result = segment(small, scene["dsm"], tmp_path / "out.tif", window=4000, device="cpu")
    assert result["window"] == 140 and result["windows"] <= 9  # 128 px rounded up to the 14 px patch
    assert time.perf_counter() - started < 120


def test_a_model_call_takes_a_bounded_number_of_pixels():
    calls = []

    def model(optical, dsm):
        calls.append(optical.shape[0])
        return optical[:, :2]

    import torch

    predictor = WindowPredictor(torch.nn.Identity(), torch.device("cpu"), batch_size=64)
    predictor.model = model
    windows = np.zeros((64, 3, 518, 518), np.float32)
    predictor(windows, windows[:, :1])
    assert max(calls) == CALL_PIXELS["cpu"] // 518 ** 2 == 4 and sum(calls) == 64


def test_sigterm_during_the_largest_window_stops_within_seconds(tmp_path, scene):
    """`--window 4000` on a 128 px scene ran for minutes and ignored SIGTERM for 20 s in one forward pass."""
    big = tmp_path / "big.tif"
    gdal.Translate(str(big), str(scene["optical"]), width=2048, height=2048)  # windows of the largest size
    process = subprocess.Popen([*MOBANET, "segment", "--json-progress", "--optical", str(big), "--dsm",
                                str(scene["dsm"]), "--output", str(tmp_path / "out.tif"), "--window", "4000",
                                "--batch-size", "64", "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        messages = []
        for line in process.stdout:
            event = json.loads(line)
            messages.append(event.get("message", ""))
            if event["event"] == "progress" and event["message"] == "Segmenting":
                break
        assert any(m.startswith("Window 4000 px became 896 px") for m in messages), messages
        time.sleep(1.0)  # inside the first model call
        assert process.poll() is None
        signalled = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=120)
        stopped_after = time.perf_counter() - signalled
    finally:
        process.kill()
    assert process.returncode == 130 and json.loads(rest.splitlines()[-1])["kind"] == "Cancelled"
    assert stopped_after < 15, f"stopped {stopped_after:.1f} s after SIGTERM"
    assert files(tmp_path) == ["big.tif"]


# -- leftovers and messages ----------------------------------------------------------------------------------------

def test_stale_partials_of_a_killed_run_are_cleaned_by_the_next(tmp_path, scene, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = [f".out.partial-{int(dead.stdout)}.tif", f".out.partial-{int(dead.stdout)}.qml"]
    for name in stale:
        (tmp_path / name).write_bytes(b"half a file")
    code, _ = run_cli(capsys, "segment", "--optical", scene["optical"], "--dsm", scene["dsm"], "--output",
                      tmp_path / "out.tif", "--quiet")
    assert code == 0 and files(tmp_path) == ["out.qml", "out.tif", "out.tif.aux.xml"]


def test_an_interrupted_training_leaves_no_log_folder(tmp_path, scene):
    process = subprocess.Popen([*MOBANET, "train", "--json-progress", "--optical", str(scene["optical"]), "--dsm",
                                str(scene["dsm"]), "--labels", str(scene["labels"]), "--output",
                                str(tmp_path / "m.safetensors"), "--epochs", "1", "--iterations", "500",
                                "--batch-size", "2", "--window", "56", "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        for line in process.stdout:
            event = json.loads(line)
            if event["event"] == "progress" and event["message"].startswith("Epoch"):
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130 and json.loads(rest.splitlines()[-1])["kind"] == "Cancelled"
    assert files(tmp_path) == []  # no model, no state, no empty m_logs/


def test_a_paletted_optical_raster_is_segmented_like_its_rgb_version(tmp_path, scene):
    values, _ = raster(scene["optical"])
    colours, indices = np.unique(values.reshape(3, -1).T // 32 * 32, axis=0, return_inverse=True)
    assert len(colours) <= 256
    paletted = tmp_path / "paletted.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(paletted), 256, 256, 1, gdal.GDT_Byte)
    dataset.SetGeoTransform(gdal.Open(str(scene["optical"])).GetGeoTransform())
    dataset.SetProjection(gdal.Open(str(scene["optical"])).GetProjection())
    table = gdal.ColorTable()
    for i, colour in enumerate(colours):
        table.SetColorEntry(i, (*map(int, colour), 255))
    dataset.GetRasterBand(1).SetRasterColorTable(table)
    dataset.GetRasterBand(1).WriteArray(indices.reshape(256, 256).astype(np.uint8))
    dataset = None
    rgb = write_like(tmp_path / "rgb.tif", scene["optical"], colours[indices].T.reshape(3, 256, 256).astype(np.uint8))
    segment(paletted, scene["dsm"], tmp_path / "from_palette.tif", device="cpu")
    segment(rgb, scene["dsm"], tmp_path / "from_rgb.tif", device="cpu")
    assert np.array_equal(raster(tmp_path / "from_palette.tif")[0], raster(tmp_path / "from_rgb.tif")[0])


def test_resampling_to_a_much_finer_model_gsd_is_refused(tmp_path, scene, capsys):
    from .test_card import setter, with_card

    model = with_card(default_model_path(), tmp_path, setter("gsd", value=0.01))
    code, err = run_cli(capsys, "segment", "--optical", scene["optical"], "--dsm", scene["dsm"], "--model", model,
                        "--output", tmp_path / "out.tif", "--resample-to-model-gsd")
    assert code == 2 and err == [f"error: The model {model} was trained at 0.01 m pixels, much finer than the 0.1 m "
                                 f"of {scene['optical']}: predicting at its pixel size would take 100 times the work; "
                                 "drop --resample-to-model-gsd or use a model trained near 0.1 m."]


def test_a_negative_gsd_in_the_card_names_the_model_and_the_field(tmp_path, scene, capsys):
    from .test_card import setter, with_card

    model = with_card(default_model_path(), tmp_path, setter("gsd", value=-0.1))
    code, err = run_cli(capsys, "segment", "--optical", scene["optical"], "--dsm", scene["dsm"], "--model", model,
                        "--output", tmp_path / "out.tif", "--resample-to-model-gsd")
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: Model file {model}: The model card's field 'gsd' must be a positive number, "
                             "not -0.1.") and "mobanet train" in err[0]
