"""Benchmark distributed segmentation: MPix/s of one process against 1 and 2 local Ray workers, per-tile overhead.

Every run is the real CLI (`python -m mobanet segment`) on the same synthetic
scene with the embedded model, one after the other, so the numbers are side by
side: the single-process run, then `--ray local --workers 1` and `--workers 2`
for each tile size. Reported per run: wall time and MPix/s of the whole
command, the time to start Ray and load the model on the workers, the tile
phase, the windows predicted (the halo repeats windows at tile borders) and
the classes' agreement with the single-process output. The per-tile overhead
is the 1-worker tile phase minus the single-process prediction time scaled by
the extra windows, divided by the number of tiles: what a tile costs beyond its
windows (scheduling, halo reads, writing the tile). The load average before each
run tells whether other jobs shared the machine.

Writes benchmarks/results/distributed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from osgeo import gdal

sys.path.insert(0, str(Path(__file__).parent))
from bench_segment import write_scene  # noqa: E402

from mobanet.resources import DEFAULT_MODEL_NAME, resource_dir  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "distributed.md"


def run(optical: Path, dsm: Path, output: Path, extra: list[str], repeats: int = 1) -> dict:
    """The fastest of ``repeats`` CLI runs: its JSON result with the wall time and the load average before it."""
    runs = [_run_once(optical, dsm, output, extra) for _ in range(repeats)]
    return min(runs, key=lambda r: r["wall_s"])


def _run_once(optical: Path, dsm: Path, output: Path, extra: list[str]) -> dict:
    load = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "mobanet", "segment", "--optical", str(optical), "--dsm",
                              str(dsm), "--output", str(output), "--json-progress", *extra],
                             capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    result = [e for e in lines if e["event"] == "result"]
    if process.returncode != 0 or not result:
        raise SystemExit(f"run {extra} failed ({process.returncode}): {process.stderr[-2000:]}")
    return {**result[-1], "wall_s": wall, "load_before": load}


def classes(path: Path) -> np.ndarray:
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).ReadAsArray()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="scene side in pixels")
    parser.add_argument("--tile-sizes", default="1024,512", help="tile sides to try, comma-separated")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting; the fastest counts")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    tile_sizes = [int(t) for t in args.tile_sizes.split(",")]
    model = resource_dir() / "models" / DEFAULT_MODEL_NAME
    device = "cuda" if torch.cuda.is_available() else "cpu"
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {os.cpu_count()} cores"
    worker_counts = (1, 2) if device == "cpu" or torch.cuda.device_count() >= 2 else (1,)  # one GPU a worker

    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as folder:
        folder = Path(folder)
        optical, dsm = write_scene(folder, args.size, args.size, seed=3, offset=5)
        common = ["--model", str(model), "--device", device]
        rows = [("single process", run(optical, dsm, folder / "single.tif", common, args.repeats),
                 folder / "single.tif")]
        for tile_size in tile_sizes:
            for workers in worker_counts:
                output = folder / f"ray_{tile_size}_{workers}.tif"
                extra = [*common, "--ray", "local", "--workers", str(workers), "--tile-size", str(tile_size)]
                rows.append((f"Ray, {workers} worker(s), tiles {tile_size} px",
                             run(optical, dsm, output, extra, args.repeats), output))
        reference = classes(folder / "single.tif")
        agreement = [float((classes(path) == reference).mean()) for _, _, path in rows]

    single = rows[0][1]
    mpix = args.size * args.size / 1e6
    lines = [
        "# Distributed segmentation benchmark (Ray)", "",
        f"Machine: {platform.machine()}, {device_name}, torch {torch.__version__}, Ray "
        f"{_ray_version()}. Scene {args.size} x {args.size} px ({mpix:.2f} MPix, synthetic), embedded model "
        f"({single['window']} px windows, overlap {single['overlap']}), device {device}. Command:",
        f"`python benchmarks/bench_distributed.py --size {args.size} --tile-sizes {args.tile_sizes} "
        f"--repeats {args.repeats}` (fastest of the repeats).", "",
        "| run | wall s | MPix/s | Ray start s | tile phase s | tiles | windows predicted | agreement | load before |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, result, _), agree in zip(rows, agreement, strict=True):
        timings = result.get("ray_timings", {})
        lines.append(
            f"| {name} | {result['wall_s']:.1f} | {mpix / result['wall_s']:.3f} | "
            f"{timings.get('start_s', 0):.1f} | {timings.get('tiles_s', result['timings']['predict_s']):.1f} | "
            f"{result.get('tiles', '-')} | {result['windows_predicted']} | {agree:.6f} | "
            f"{result['load_before']:.1f} |")
    lines += ["", "Per-tile overhead (1 worker): tile phase minus the single-process prediction time scaled by "
              "the extra windows of the halo, per tile.", "",
              "| tiles | halo windows | overhead per tile s | 2 workers / 1 worker (tile phase) |", "|---|---|---|---|"]
    for tile_size in tile_sizes:
        one = next(r for n, r, _ in rows if n == f"Ray, 1 worker(s), tiles {tile_size} px")
        two = next((r for n, r, _ in rows if n == f"Ray, 2 worker(s), tiles {tile_size} px"), one)
        halo = one["windows_predicted"] / single["windows_predicted"]
        overhead = (one["ray_timings"]["tiles_s"] - single["timings"]["predict_s"] * halo) / one["tiles"]
        speedup = one["ray_timings"]["tiles_s"] / two["ray_timings"]["tiles_s"]
        lines.append(f"| {one['tiles']} of {tile_size} px | +{100 * (halo - 1):.0f} % | {overhead:.2f} | "
                     f"{speedup:.2f}x |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def _ray_version() -> str:
    try:
        import ray
    except ImportError:
        return "not installed"
    return ray.__version__


if __name__ == "__main__":
    main()
