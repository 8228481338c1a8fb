"""One output-commit mechanism: outputs appear together, verified, or not at all; write errors are errors."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr

from mobanet.errors import OutputError
from mobanet.fileutil import GDAL_SIDECARS, OutputSet, final_name, remove_stale_partials
from mobanet.raster.writers import class_raster

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "engine")}


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_set_appears_whole_and_only_when_it_ends(tmp_path):
    with OutputSet() as outputs:
        outputs.write_text(tmp_path / "a.json", "{}")
        outputs.write_bytes(tmp_path / "b.bin", b"\0\1")
        written = [o.temp.name for o in outputs.outputs]
        assert listing(tmp_path) == sorted(written)  # only temporary names while the set is open
        assert all(name.startswith(".") and ".partial-" in name for name in written)
    assert listing(tmp_path) == ["a.json", "b.bin"]
    assert (tmp_path / "b.bin").read_bytes() == b"\0\1"
    assert oct((tmp_path / "b.bin").stat().st_mode & 0o777) == oct(0o666 & ~os.umask(0o022))


def test_an_error_anywhere_leaves_the_previous_files(tmp_path):
    (tmp_path / "a.json").write_text("old")
    with pytest.raises(KeyboardInterrupt), OutputSet() as outputs:
        outputs.write_text(tmp_path / "a.json", "new")
        outputs.write_text(tmp_path / "b.json", "new")
        raise KeyboardInterrupt
    assert listing(tmp_path) == ["a.json"] and (tmp_path / "a.json").read_text() == "old"


def test_a_failed_verification_commits_nothing(tmp_path):
    def broken(path: Path) -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OutputError, match=r"Writing .*second.txt failed: the disk reported an input/output error"):
        with OutputSet() as outputs:
            outputs.write_text(tmp_path / "first.txt", "1")
            outputs.add(tmp_path / "second.txt", verify=broken).temp.write_text("2")
    assert listing(tmp_path) == []


def test_a_file_changed_after_writing_fails_verification(tmp_path):
    with pytest.raises(OutputError, match="reads back different"):
        with OutputSet() as outputs:
            outputs.write_text(tmp_path / "a.txt", "written")
            outputs.outputs[0].temp.write_text("damaged")
    assert listing(tmp_path) == []


def test_a_failing_rename_puts_every_previous_file_back(tmp_path):
    (tmp_path / "main.txt").write_text("old main")
    (tmp_path / "x.tif").write_text("old raster")
    (tmp_path / "x.tif.ovr").write_text("old overviews")
    (tmp_path / "blocked").mkdir()  # a non-empty folder cannot be replaced by a file
    (tmp_path / "blocked" / "inside").write_text("x")
    with pytest.raises(OutputError, match="blocked"):
        with OutputSet() as outputs:
            outputs.write_text(tmp_path / "blocked", "new")  # renamed last (added first)
            outputs.write_text(tmp_path / "main.txt", "new main")
            outputs.add(tmp_path / "x.tif", sidecars=GDAL_SIDECARS).temp.write_text("new raster, no overviews")
            outputs.write_text(tmp_path / "new.txt", "new")
    assert listing(tmp_path) == ["blocked", "main.txt", "x.tif", "x.tif.ovr"]
    assert [(tmp_path / n).read_text() for n in ("main.txt", "x.tif", "x.tif.ovr")] == \
        ["old main", "old raster", "old overviews"]


def test_missing_folders_are_created_at_commit_only(tmp_path):
    target = tmp_path / "logs" / "deep" / "history.json"
    with pytest.raises(RuntimeError), OutputSet() as outputs:
        outputs.write_text(target, "[]")
        raise RuntimeError("fail before the commit")
    assert listing(tmp_path) == []  # no empty folder after a failure
    with OutputSet() as outputs:
        outputs.write_text(target, "[]")
        assert not (tmp_path / "logs").exists()
    assert target.read_text() == "[]" and listing(tmp_path) == ["logs"]


def test_gdal_sidecars_follow_and_stale_ones_go(tmp_path):
    final = tmp_path / "x.tif"
    final.write_bytes(b"old")
    Path(f"{final}.ovr").write_bytes(b"old overviews")  # belongs to the old file only
    with OutputSet() as outputs:
        output = outputs.add(final, sidecars=GDAL_SIDECARS)
        output.temp.write_bytes(b"new")
        Path(f"{output.temp}.aux.xml").write_text("<PAMDataset/>")
    assert listing(tmp_path) == ["x.tif", "x.tif.aux.xml"]


def test_after_commit_actions_wait_for_the_commit(tmp_path):
    done = []
    with pytest.raises(ValueError), OutputSet() as outputs:
        outputs.write_text(tmp_path / "a", "1")
        outputs.after_commit(lambda: done.append("discarded set"))
        raise ValueError
    with OutputSet() as outputs:
        outputs.write_text(tmp_path / "a", "1")
        outputs.after_commit(lambda: done.append((tmp_path / "a").exists()))
    assert done == [True]


def test_stale_partials_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = [f".out.partial-{dead_pid}.tif", f".out.partial-{dead_pid}.tif.aux.xml",
                 f".m.state.partial-{dead_pid}.safetensors", f".out.partial-{alive.pid}.tif", "keep.tif",
                 f".out.partial-{os.getpid()}.tif"]
        for name in names:
            (tmp_path / name).write_bytes(b"x")
        with OutputSet() as outputs:
            outputs.write_text(tmp_path / "new.txt", "1")
        assert listing(tmp_path) == sorted([f".out.partial-{alive.pid}.tif", "keep.tif",
                                            f".out.partial-{os.getpid()}.tif", "new.txt"])
    finally:
        alive.kill()
        alive.wait()
    assert remove_stale_partials(tmp_path) == [tmp_path / f".out.partial-{alive.pid}.tif"]
    assert final_name(tmp_path / ".m.state.partial-12.safetensors") == tmp_path / "m.state.safetensors"


def test_signals_wait_until_the_renames_are_done(tmp_path, monkeypatch):
    """SIGTERM arriving while the set is renamed is delivered after it: the set is whole, then the run stops."""
    caught = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(listing(tmp_path)))
    rename = os.replace

    def rename_then_signal(source, target):  # the signal lands between two renames
        rename(source, target)
        if not caught:
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        with OutputSet() as outputs:
            for name in "abc":
                outputs.write_text(tmp_path / name, name)
            monkeypatch.setattr(os, "replace", rename_then_signal)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert caught == [["a", "b", "c"]]


def run_limited(code: str, limit_bytes: int) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose file-size limit is ``limit_bytes`` (SIGXFSZ ignored, as Python does)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], preexec_fn=limit, capture_output=True,
                          text=True, env=ENV, timeout=120)


def test_a_file_size_limit_is_an_error_naming_the_file(tmp_path):
    done = run_limited(f"""
        from pathlib import Path
        from mobanet.errors import OutputError
        from mobanet.fileutil import OutputSet
        try:
            with OutputSet() as outputs:
                outputs.write_text(Path({str(tmp_path)!r}) / "small.txt", "fits")
                outputs.write_bytes(Path({str(tmp_path)!r}) / "big.bin", bytes(100_000))
        except OutputError as exc:
            print(exc)
        """, 50_000)
    assert done.returncode == 0, done.stderr
    assert "Writing " + str(tmp_path / "big.bin") + " failed: the file would exceed the largest file" in done.stdout
    assert listing(tmp_path) == []


def test_gdal_errors_while_closing_a_raster_are_not_swallowed(tmp_path):
    """GDAL 3.6 reports a flush error from a dataset destructor only as "Exception ignored"; here it raises."""
    done = run_limited(f"""
        import numpy as np
        from pathlib import Path
        from mobanet.errors import OutputError
        from mobanet.fileutil import OutputSet, GDAL_SIDECARS
        from mobanet.raster.writers import confidence_raster
        folder = Path({str(tmp_path)!r})
        try:
            with OutputSet() as outputs:
                output = outputs.add(folder / "conf.tif", sidecars=GDAL_SIDECARS)
                raster = confidence_raster(output.temp, 1024, 1024, (0, 1, 0, 0, 0, -1), "", final=output.final)
                rng = np.random.default_rng(0)
                for y in range(0, 1024, 256):
                    raster.write(y, rng.random((256, 1024), dtype=np.float32))
                raster.close()
                output.verify = raster.verify
        except OutputError as exc:
            print(exc)
        """, 200_000)
    assert done.returncode == 0, done.stderr
    assert f"Writing {tmp_path / 'conf.tif'} failed: the file would exceed" in done.stdout
    assert "Exception ignored" not in done.stderr and listing(tmp_path) == []


def test_a_raster_that_reads_back_different_is_refused(tmp_path):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    with pytest.raises(OutputError, match="reads back different"):
        with OutputSet() as outputs:
            output = outputs.add(tmp_path / "c.tif", sidecars=GDAL_SIDECARS)
            raster = class_raster(output.temp, 64, 64, (0, 1, 0, 0, 0, -1), srs.ExportToWkt(), ["a", "b"],
                                  [(0, 0, 0), (9, 9, 9)], final=output.final)
            raster.write(0, np.zeros((64, 64), np.uint8))
            raster.close()
            output.verify = raster.verify
            dataset = gdal.Open(str(output.temp), gdal.GA_Update)  # someone changes the file before the commit
            dataset.GetRasterBand(1).WriteArray(np.ones((1, 1), np.uint8), 3, 3)
            dataset = None
    assert listing(tmp_path) == []
