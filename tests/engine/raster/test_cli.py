"""`python -m mobanet segment` as the plugin runs it: JSON lines, exit codes, clean interrupt."""

import json
import os
import signal
import subprocess
import sys
import time

from .conftest import synthetic_pair, write_raster

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "QT_QPA_PLATFORM": "offscreen"}


def _run(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "mobanet", "segment", "--json-progress", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=120, **kwargs)


def test_json_progress_prints_only_json_lines_ending_with_a_result(tmp_path, tiny_model):
    optical, dsm = synthetic_pair(100)
    o, d = write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm)
    done = _run(["--optical", o, "--dsm", d, "--model", tiny_model, "--output", tmp_path / "out.tif"])
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]  # every line is JSON
    assert events[-1]["event"] == "result" and [e["event"] for e in events].count("result") == 1
    assert any(e["event"] == "progress" and e["fraction"] == 1.0 for e in events)
    result = events[-1]
    assert result["output"] == str(tmp_path / "out.tif") and (tmp_path / "out.qml").is_file()
    assert abs(sum(result["class_shares"].values()) - 1.0) < 1e-6


def test_json_progress_error_event_and_exit_code(tmp_path, tiny_model):
    optical, dsm = synthetic_pair(64)
    o, d = write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm)
    done = _run(["--optical", o, "--dsm", d, "--model", tiny_model, "--output", tmp_path / "out.tif",
                 "--bands", "1,2,9"])
    assert done.returncode == 2
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "InputError"
    assert "o.tif" in events[-1]["message"] and "--bands" in events[-1]["message"]


def test_sigterm_leaves_nothing_under_the_final_names(tmp_path, tiny_model):
    optical, dsm = synthetic_pair(1400)  # with 56 px windows one by one: several seconds of work
    o, d = write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm)
    outputs = [tmp_path / "out.tif", tmp_path / "out.qml", tmp_path / "conf.tif", tmp_path / "poly.gpkg"]
    process = subprocess.Popen(
        [sys.executable, "-m", "mobanet", "segment", "--json-progress", "--optical", str(o), "--dsm", str(d),
         "--model", str(tiny_model), "--output", str(outputs[0]), "--confidence", str(outputs[2]),
         "--polygons", str(outputs[3]), "--batch-size", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        for line in process.stdout:  # wait until windows are being predicted (temporary files exist)
            event = json.loads(line)
            if event["event"] == "progress" and event["message"] == "Segmenting":
                break
        time.sleep(0.5)
        assert process.poll() is None, "the run finished before it could be interrupted; use a bigger scene"
        assert list(tmp_path.glob(".out.partial-*"))
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert json.loads(rest.splitlines()[-1])["kind"] == "Cancelled"
    assert not any(p.exists() for p in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tif", "o.tif"]
