"""Real Ray on 127.0.0.1: the distributed result equals the single-process one, through worker loss and restarts.

Every run is the real CLI in its own process with a private Ray instance (or a
head node started with `ray start`); each test checks that no Ray process or
folder outlives it.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

from mobanet.raster import segment

from .conftest import cli_env, error_of, events, mobanet_command, read, result_of, run_cli, write_mask

pytest.importorskip("ray", reason="Ray is part of the dev venv (requirements.txt)")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(scene_300, model_56, tmp_path_factory):
    """The single-process run that every distributed run must equal."""
    folder = tmp_path_factory.mktemp("reference")
    result = segment(*scene_300, folder / "classes.tif", model=model_56, confidence=folder / "confidence.tif",
                     polygons=folder / "classes.gpkg")
    return folder, result


def _segment_args(scene, model, output: Path, *extra: str) -> list[str]:
    return ["segment", "--optical", str(scene[0]), "--dsm", str(scene[1]), "--model", str(model),
            "--output", str(output), *extra]


def _assert_equal_to_reference(output: Path, reference_folder: Path) -> None:
    classes, expected = read(output), read(reference_folder / "classes.tif")
    assert classes.shape == expected.shape
    assert (classes == expected).mean() >= 0.9999  # only float summation order may differ
    source, written = gdal.Open(str(reference_folder / "classes.tif")), gdal.Open(str(output))
    assert written.GetGeoTransform() == source.GetGeoTransform()
    assert written.GetRasterBand(1).GetCategoryNames() == source.GetRasterBand(1).GetCategoryNames()
    assert output.with_suffix(".qml").read_text() == (reference_folder / "classes.qml").read_text()


def _worker_pids(found: list[dict]) -> list[int]:
    return [int(m.group(1)) for e in found if e["event"] == "info"
            for m in [re.search(r"Worker \d+ of \d+ ready: pid (\d+)", e["message"])] if m]


def _gone(pid: int, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _stores(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".tiles-" in p.name]


def _stored(folder: Path) -> list[Path]:
    """Finished tiles in the tile stores under ``folder``."""
    return [p for store in _stores(folder) for p in store.glob("y*.npz")]


def _ray_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("mobanet-ray-*")) | set(Path("/tmp").glob("mobanet-ray-*"))


def test_two_local_workers_equal_the_single_process_run(scene_300, model_56, reference, tmp_path):
    output = tmp_path / "classes.tif"
    ray_folders = _ray_folders()
    code, found, stderr = run_cli(_segment_args(
        scene_300, model_56, output, "--confidence", str(tmp_path / "confidence.tif"),
        "--polygons", str(tmp_path / "classes.gpkg"), "--ray", "local", "--workers", "2", "--tile-size", "112"),
        tmp_path)
    assert code == 0, stderr[-3000:]
    result = result_of(found)
    assert (result["tiles"], result["tiles_computed"], result["workers"], result["ray"]) == (9, 9, 2, "local")
    _assert_equal_to_reference(output, reference[0])
    np.testing.assert_allclose(read(tmp_path / "confidence.tif"), read(reference[0] / "confidence.tif"), atol=1e-5)
    assert result["polygon_count"] == reference[1]["polygon_count"]
    polygons = ogr.Open(str(tmp_path / "classes.gpkg"))
    assert polygons.GetLayer("classes").GetFeatureCount() == reference[1]["polygon_count"] > 0
    polygons = None
    assert result["class_pixels"] == reference[1]["class_pixels"]
    progress = [e for e in found if e["event"] == "progress"]
    assert progress[-1]["fraction"] == 1.0 and progress[-1]["message"] == "Segmenting on Ray: 9/9 tiles"
    # nothing left behind: no tile store, no temporary file, no Ray folder, no worker process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.gpkg", "classes.qml", "classes.tif",
                                                         "classes.tif.aux.xml", "confidence.tif"]
    pids = _worker_pids(found)
    assert len(pids) == 2 and all(_gone(pid) for pid in pids)
    assert _ray_folders() <= ray_folders  # the private Ray instance took its folder with it


def _start(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen, list[dict]]:
    """The CLI in the background; its JSON events are collected as they arrive."""
    process = subprocess.Popen(mobanet_command(*args, "--json-progress"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=cli_env(tmp_path))
    found: list[dict] = []

    def collect() -> None:
        for line in process.stdout:
            if line.startswith("{"):
                found.append(json.loads(line))

    threading.Thread(target=collect, daemon=True).start()
    threading.Thread(target=process.stderr.read, daemon=True).start()  # never block the CLI on a full pipe
    return process, found


def _wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended (exit {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_killed_worker_has_its_tiles_retried_and_the_output_is_the_same(scene_300, model_56, reference,
                                                                          tmp_path):
    output = tmp_path / "classes.tif"
    args = _segment_args(scene_300, model_56, output, "--ray", "local", "--workers", "2", "--tile-size", "56")
    process, found = _start(args, tmp_path)
    try:
        _wait_for(lambda: len(_worker_pids(found)) == 2 and _stored(tmp_path), process, "the first finished tile")
        victim = _worker_pids(found)[0]
        os.kill(victim, signal.SIGKILL)  # a worker process dies mid-run
        assert process.wait(timeout=600) == 0
    finally:
        if process.poll() is None:
            process.kill()
    result = result_of(found)
    assert result["workers_replaced"] >= 1 and result["tiles"] == 25 and result["tiles_computed"] == 25
    assert any(e["event"] == "warning" and "died while computing tile" in e["message"] for e in found)
    _assert_equal_to_reference(output, reference[0])
    assert not _stores(tmp_path)


def test_an_interrupted_run_resumes_with_only_the_missing_tiles(scene_300, model_56, reference, tmp_path):
    output = tmp_path / "classes.tif"
    args = _segment_args(scene_300, model_56, output, "--confidence", str(tmp_path / "confidence.tif"),
                         "--ray", "local", "--workers", "2", "--tile-size", "56")

    process, found = _start(args, tmp_path)
    try:
        _wait_for(lambda: len(_stored(tmp_path)) >= 3, process, "three finished tiles")
        process.send_signal(signal.SIGINT)  # Ctrl-C on the driver
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            process.kill()
    assert error_of(found)["kind"] == "Cancelled"
    assert not output.exists() and not (tmp_path / "confidence.tif").exists()  # nothing under the final names
    kept = len(_stored(tmp_path))
    assert 3 <= kept < 25 and not list(_stores(tmp_path)[0].glob(".*partial*"))
    assert all(_gone(pid) for pid in _worker_pids(found))

    code, found, stderr = run_cli(args, tmp_path)  # the same command again
    assert code == 0, stderr[-3000:]
    result = result_of(found)
    assert (result["tiles_reused"], result["tiles_computed"]) == (kept, 25 - kept)
    _assert_equal_to_reference(output, reference[0])
    assert not _stores(tmp_path)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _NotRay:
    """A TCP server on 127.0.0.1 that answers like a web server, not like Ray's gRPC head."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                connection.recv(64)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("kind", ["closed port", "not Ray"])
def test_an_unreachable_address_fails_within_seconds_with_the_fix(scene_300, model_56, tmp_path, kind):
    server = _NotRay() if kind == "not Ray" else None
    address = f"127.0.0.1:{server.port if server else _free_port()}"
    started = time.monotonic()
    code, found, _ = run_cli(_segment_args(scene_300, model_56, tmp_path / "c.tif", "--ray", address), tmp_path,
                             timeout=120)
    elapsed = time.monotonic() - started
    message = error_of(found)["message"]
    assert code == 2 and address in message and "ray start --head" in message
    assert ("No Ray cluster answers" if server is None else "is not a Ray head node") in message
    assert elapsed < 60  # the process start and model check included; ray.init alone would wait minutes
    assert list(tmp_path.iterdir()) == []
    if server:
        server.server.close()


def test_without_ray_the_option_says_how_to_install_it(scene_300, model_56, tmp_path):
    hide_ray = ("import sys; sys.modules['ray'] = None; from mobanet.cli import main; "
                "raise SystemExit(main(sys.argv[1:]))")
    process = subprocess.run([sys.executable, "-c", hide_ray, *_segment_args(
        scene_300, model_56, tmp_path / "c.tif", "--ray", "local"), "--json-progress"],
        capture_output=True, text=True, timeout=300, env=cli_env(tmp_path))
    assert process.returncode == 2
    message = error_of(events(process.stdout))["message"]
    assert "pip install 'mobanet[ray]'" in message and "Traceback" not in process.stderr
    assert list(tmp_path.iterdir()) == []


def test_options_need_ray_and_a_tile_of_at_least_one_window(scene_300, model_56, tmp_path):
    code, found, _ = run_cli(_segment_args(scene_300, model_56, tmp_path / "c.tif", "--workers", "2"), tmp_path)
    assert code == 2 and "--workers applies to distributed runs" in error_of(found)["message"]
    code, found, _ = run_cli(_segment_args(scene_300, model_56, tmp_path / "c.tif", "--ray", "local",
                                           "--tile-size", "30"), tmp_path)
    assert code == 2 and "--tile-size 30 is smaller than the model's window (56 px)" in error_of(found)["message"]


@pytest.fixture()
def head_node(tmp_path):
    """`ray start --head` on 127.0.0.1 (token authentication on, as Ray's default), stopped by its own PID."""
    token = tmp_path / "token"
    token.write_text("0123456789abcdef" * 4)
    env = cli_env(tmp_path, {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
                             "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"})
    port = _free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    temp_dir = Path(tempfile.mkdtemp(prefix="mobanet-head-", dir="/tmp"))  # short: Ray's socket paths must fit
    log = (tmp_path / "head.log").open("w")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
                             f"--temp-dir={temp_dir}", "--object-store-memory=100000000",
                             "--disable-usage-stats"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # the head node takes a few seconds to open its port
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, (
                    "ray start --head did not open its port: " + (tmp_path / "head.log").read_text()[-2000:])
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        left = subprocess.run(["pgrep", "-f", str(temp_dir)], capture_output=True, text=True).stdout.split()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


def test_joins_a_running_cluster_by_its_address_with_inputs_over_http(model_56, reference, head_node, http_files,
                                                                      tmp_path):
    """The cluster set-up of the README: `ray start --head`, inputs that every node reads through /vsicurl/."""
    address, env = head_node
    output = tmp_path / "out" / "classes.tif"
    output.parent.mkdir()
    code, found, stderr = run_cli(_segment_args(http_files, model_56, output, "--ray", address, "--workers", "2",
                                                "--tile-size", "112"), tmp_path, env=env)
    assert code == 0, stderr[-3000:]
    result = result_of(found)
    assert (result["ray"], result["workers"], result["tiles"]) == (address, 2, 9)
    _assert_equal_to_reference(output, reference[0])
    assert not _stores(output.parent)



def test_extent_mask_and_cog_outputs_equal_the_single_process_run(scene_300, model_56, tmp_path):
    """The assembly writes what a single-process run writes, whatever the options (here an extent, a mask, COGs)."""
    mask = write_mask(tmp_path / "mask.gpkg", "POLYGON ((500020 4999990, 500130 4999985, 500120 4999870, "
                                              "500025 4999880, 500020 4999990))")
    options = ["--extent", "500010,4999860,500140,4999995", "--mask", str(mask), "--cog"]
    single, distributed = tmp_path / "single", tmp_path / "ray"
    single.mkdir()
    distributed.mkdir()
    expected = segment(*scene_300, single / "classes.tif", model=model_56, extent=(500010, 4999860, 500140, 4999995),
                       mask=mask, cog=True, confidence=single / "confidence.tif")
    code, found, stderr = run_cli(_segment_args(scene_300, model_56, distributed / "classes.tif", *options,
                                                "--confidence", str(distributed / "confidence.tif"), "--ray",
                                                "local", "--tile-size", "112"), tmp_path)
    assert code == 0, stderr[-3000:]
    result = result_of(found)
    assert (result["width"], result["height"], result["tiles"]) == (expected["width"], expected["height"], 4)
    _assert_equal_to_reference(distributed / "classes.tif", single)
    np.testing.assert_allclose(read(distributed / "confidence.tif"), read(single / "confidence.tif"), atol=1e-5)
    written = gdal.Open(str(distributed / "classes.tif"))
    assert written.GetMetadata("IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    written = None
    assert sorted(p.name for p in distributed.iterdir()) == sorted(p.name for p in single.iterdir())


@pytest.mark.parametrize("dsm_input", ["no DSM", "DSM with gaps"])
def test_without_a_dsm_or_with_its_gaps_predicted_ray_equals_the_single_process_run(scene_300, model_56, tmp_path,
                                                                                    dsm_input):
    """Workers open the scene as the driver does: no DSM at all, or a DSM whose nodata pixels are predicted
    (`--dsm-gaps predict`, the default, which `open_scene` alone would not apply)."""
    optical, dsm = scene_300
    if dsm_input == "DSM with gaps":
        gappy = gdal.Translate(str(tmp_path / "gappy.tif"), str(dsm), noData=-9999.0)
        heights = gappy.GetRasterBand(1).ReadAsArray()
        heights[150:260, 20:140] = -9999.0
        gappy.GetRasterBand(1).WriteArray(heights)
        gappy = None
        dsm = tmp_path / "gappy.tif"
    else:
        dsm = None
    single, distributed = tmp_path / "single", tmp_path / "ray"
    single.mkdir()
    distributed.mkdir()
    expected = segment(optical, dsm, single / "classes.tif", model=model_56)
    args = ["segment", "--optical", str(optical), "--model", str(model_56), "--output",
            str(distributed / "classes.tif"), "--ray", "local", "--tile-size", "112"]
    code, found, stderr = run_cli(args + (["--dsm", str(dsm)] if dsm is not None else []), tmp_path)
    assert code == 0, stderr[-3000:]
    result = result_of(found)
    assert result["dsm_absent"] == (dsm is None) == expected["dsm_absent"]
    assert result["tiles"] == 9
    _assert_equal_to_reference(distributed / "classes.tif", single)
    if dsm is not None:  # the gap is predicted (classes there), not nodata
        assert (read(distributed / "classes.tif")[150:260, 20:140] != 255).all()


def test_a_margin_plan_on_ray_equals_the_single_process_margin_run(scene_300, model_56, tmp_path):
    """--margin reaches the workers: each tile keeps only the window centres, as the single-process run does."""
    single, distributed = tmp_path / "single", tmp_path / "ray"
    single.mkdir()
    distributed.mkdir()
    expected = segment(*scene_300, single / "classes.tif", model=model_56, margin=7,
                       confidence=single / "confidence.tif")
    code, found, stderr = run_cli(_segment_args(scene_300, model_56, distributed / "classes.tif", "--margin", "7",
                                                "--confidence", str(distributed / "confidence.tif"), "--ray",
                                                "local", "--tile-size", "112"), tmp_path)
    assert code == 0, stderr[-3000:]
    result = result_of(found)
    assert (result["margin"], result["overlap"], result["windows"]) == (7, None, expected["windows"])
    _assert_equal_to_reference(distributed / "classes.tif", single)
    np.testing.assert_allclose(read(distributed / "confidence.tif"), read(single / "confidence.tif"), atol=1e-5)
    default = segment(*scene_300, tmp_path / "default.tif", model=model_56)
    assert (read(single / "classes.tif") != read(tmp_path / "default.tif")).any()  # the plan made a difference
    assert default["windows"] != expected["windows"]
