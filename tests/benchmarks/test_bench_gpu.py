"""`make bench-gpu` keeps working without a GPU: its reduced CPU workload runs every section (the CUDA-only
memory cap is reported as skipped) and writes the report and its JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


@pytest.mark.slow
def test_reduced_run_covers_every_section(tmp_path):
    output = tmp_path / "gpu.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--threads", "1", "--output", str(output)],
                          capture_output=True, text=True, timeout=850, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(output.with_suffix(".json").read_text())
    sections = report["sections"]
    assert report["cuda"] is False and report["reduced"] is True and report["device"].startswith("CPU")
    assert {name: s["status"] for name, s in sections.items()} == {
        "agreement": "ok", "inference": "ok", "compile": "ok", "oom": "skipped", "training": "ok", "torchrun": "ok"}

    embedded, random_model = sections["agreement"]["rows"]
    assert embedded["pixels"] == 224 * 224 and embedded["agreement"] >= 0.995  # CPU bf16 autocast vs float32
    assert 0.9 < random_model["agreement"] <= 1.0
    assert sections["agreement"]["precision"] == "cpu bfloat16 autocast"

    rows = sections["inference"]["rows"]
    assert [r["batch"] for r in rows] == [2, 4] and all(r["windows"] > 0 and r["forward_tflops"] > 0 for r in rows)
    assert sections["inference"]["flops_per_window"] > 1e8
    assert [r["variant"] for r in sections["compile"]["rows"]] == ["eager", "block by block", "whole model"]
    assert sections["compile"]["backend"] == "eager"
    assert "CUDA" in sections["oom"]["skipped"]
    assert sections["training"]["rows"][0]["steps_per_s"] > 0 and sections["training"]["precision"] == "float32"
    torchrun = sections["torchrun"]
    assert torchrun["backend"] == "gloo" and torchrun["processes"] == 1 and torchrun["output_written"]

    text = output.read_text()
    assert "no CUDA GPU: reduced workload on the CPU" in text
    for heading in ("## 1. Agreement", "## 2. Inference", "## 3. torch.compile", "## 4. Out-of-memory back-off",
                    "## 5. Training", "## 6. One-process torchrun"):
        assert heading in text
