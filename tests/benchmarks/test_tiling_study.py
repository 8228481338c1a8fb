"""The tiling study runs end to end on a small held-out scene and reports each plan against the dense reference."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tiling_study.py"


@pytest.mark.slow
def test_small_study_compares_plans_with_the_dense_reference(tmp_path):
    output = tmp_path / "tiling.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--scenes", "1", "--size", "256", "--models", "embedded",
                           "--overlaps", "0,0.5", "--margins", "28,200", "--workdir", str(tmp_path / "work"),
                           "--output", str(output)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = json.loads(output.with_suffix(".json").read_text())
    plans = {p["plan"]: p for p in study["models"][0]["plans"]}
    assert list(plans) == ["dense reference (stride 32, summed)", "overlap 0", "overlap 0.5", "margin 28 px"]
    reference = plans["dense reference (stride 32, summed)"]
    assert reference["agreement"] == 1.0 and reference["miou_loss_points"] == 0.0
    assert reference["windows"] > plans["overlap 0.5"]["windows"] > plans["margin 28 px"]["windows"]
    assert plans["overlap 0.5"]["windows_speedup_vs_old_default"] == 1.0
    assert all(0.5 < p["agreement"] <= 1.0 and 0.0 <= p["miou"] <= 1.0 for p in plans.values())
    assert study["chosen"] in (None, "overlap 0", "overlap 0.5", "margin 28 px")
    assert all(p["passes"] == (p["agreement"] >= 0.995 and p["miou_loss_points"] <= 0.2) for p in plans.values())
    text = output.read_text()
    assert "| margin 28 px |" in text and "## Choice" in text and "seeds 5000..5000" in text
