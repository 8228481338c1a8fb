"""What committing outputs safely costs: writing a class and a confidence raster vs verifying and renaming them.

`segment` writes its rasters block by block, closes them (overviews,
flush), and the `OutputSet` then fsyncs every file, reads it back against
the hash of the rows written and renames the set. This times those phases
for square rasters of a few sizes, with smooth class fields like real
output. Prints a Markdown table and writes benchmarks/results/commit.md.

    .venv/bin/python benchmarks/bench_commit.py [--sizes 2048 8192]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from osgeo import osr

from mobanet.fileutil import GDAL_SIDECARS, OutputSet
from mobanet.raster.writers import class_raster, confidence_raster

RESULTS = Path(__file__).parent / "results" / "commit.md"
ROWS = 512


def field(y: int, rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth class regions and confidences for rows y .. y + rows (compress like real output)."""
    yy, xx = np.mgrid[y:y + rows, 0:width].astype(np.float32)
    wave = np.sin(xx / 97.0) + np.cos(yy / 83.0) + 0.5 * np.sin((xx + yy) / 41.0)
    classes = np.clip(((wave + 2.5) * 1.2).astype(np.uint8), 0, 5)
    return classes, (0.6 + 0.4 * np.abs(np.sin(wave * 3))).astype(np.float32)


def run(size: int, folder: Path) -> dict[str, float]:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    wkt, gt = srs.ExportToWkt(), (500000.0, 0.1, 0.0, 5000000.0, 0.0, -0.1)
    times = {}
    started = time.perf_counter()
    with OutputSet() as outputs:
        main = outputs.add(folder / "classes.tif", sidecars=GDAL_SIDECARS)
        conf = outputs.add(folder / "confidence.tif", sidecars=GDAL_SIDECARS)
        classes = class_raster(main.temp, size, size, gt, wkt, [f"c{i}" for i in range(6)], [(i, i, i) for i in
                                                                                            range(6)], final=main.final)
        confidence = confidence_raster(conf.temp, size, size, gt, wkt, final=conf.final)
        for y in range(0, size, ROWS):
            block_classes, block_confidence = field(y, min(ROWS, size - y), size)
            classes.write(y, block_classes)
            confidence.write(y, block_confidence)
        classes.close()
        confidence.close()
        times["write_close_s"] = time.perf_counter() - started
        tic = time.perf_counter()
        classes.verify(main.temp)
        confidence.verify(conf.temp)
        times["verify_s"] = time.perf_counter() - tic
        tic = time.perf_counter()  # verified above (segment sets them as the outputs' verifiers): only sync + rename
    times["sync_rename_s"] = time.perf_counter() - tic
    times["total_s"] = time.perf_counter() - started
    for path in folder.iterdir():
        path.unlink()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    lines = ["# Cost of the output commit (write + close vs verify vs fsync + rename)", "",
             "`" + " ".join(["benchmarks/bench_commit.py", "--sizes", *map(str, args.sizes)]) + "`", "",
             f"{os.cpu_count()} CPU(s), local disk; phases measured in the same run, so their ratio holds on a busy "
             "machine. Verification reads every row back and compares it with the hash of the rows written.", "",
             "| raster side (px) | write + close (s) | verify: read back (s) | fsync + rename (s) | "
             "verify / write |", "|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            t = run(size, Path(scratch))
            lines.append(f"| {size} | {t['write_close_s']:.2f} | {t['verify_s']:.2f} | "
                         f"{t['sync_rename_s']:.2f} | {t['verify_s'] / t['write_close_s']:.2f} |")
            print(lines[-1], flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
