"""`mobanet evaluate`: score a classified raster against reference labels (ISPRS metrics).

The prediction is a single-band class raster (`mobanet segment` output); its
category names give the classes (ISPRS when it has none). The reference is a
class-index raster or an ISPRS colour-coded RGB raster on the same grid.
Prints overall accuracy, mIoU/mF1 over the classes without clutter and over
all classes, kappa, per-class scores and the confusion matrix; --json and
--report write them to files.
"""

from __future__ import annotations

import argparse
from typing import Any

from mobanet.errors import InputError
from mobanet.evaluate import evaluate, format_report
from mobanet.progress import Progress
from mobanet.wording import option


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate", parents=parents, help="score a classified raster against reference labels",
        description=" ".join(__doc__.split("\n\n")[1].split()))
    parser.add_argument("--prediction", required=True, metavar="P", help="classified raster (single band)")
    parser.add_argument("--reference", required=True, metavar="R",
                        help="reference labels on the same grid: class indices or ISPRS colours")
    parser.add_argument("--json", metavar="OUT.json", help="write the metrics as JSON")
    parser.add_argument("--report", metavar="OUT.md|OUT.html", help="write a Markdown or HTML report")
    parser.add_argument("--eroded", action="store_true",
                        help="ignore reference pixels near class borders (ISPRS noBoundary)")
    parser.add_argument("--erosion-radius", type=int, default=3, metavar="PX",
                        help="with --eroded: disc radius in pixels around class borders (default 3)")
    parser.add_argument("--classes", metavar="NAME,NAME,...",
                        help="class names in index order, when the prediction raster has no category names")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    class_names = [name.strip() for name in args.classes.split(",")] if args.classes else None
    if class_names is not None and not all(class_names):
        raise InputError(f"{option('--classes')} {args.classes!r} has an empty name; give names separated by "
                         "commas.")
    metrics = evaluate(args.prediction, args.reference, eroded=args.eroded, radius=args.erosion_radius,
                       json_path=args.json, report_path=args.report, progress=progress, class_names=class_names)
    if progress.mode == "tqdm":  # under --json-progress the result event carries the metrics
        print(format_report(metrics, "md"), end="")
    return metrics
