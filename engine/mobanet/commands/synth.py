"""`mobanet synth`: write procedural optical/DSM/label scenes for tests, demos and benchmarks.

Each scene is three GeoTIFFs in UTM 32N (EPSG:32632): ``NAME_optical.tif``
(uint8 RGB), ``NAME_dsm.tif`` (float32 metres, nodata -9999) and
``NAME_labels.tif`` (uint8 ISPRS class indices, nodata 255, colour table and
class names), plus ``manifest.json``. Scene k uses seed SEED + k.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mobanet.errors import InputError
from mobanet.pathcheck import FOLDER, PathArgument, check_paths
from mobanet.progress import Progress
from mobanet.synth import write_scenes
from mobanet.wording import option


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "synth", parents=parents, help="write synthetic optical + DSM + label scenes",
        description=__doc__.split("\n\n")[1].replace("``", "'"))
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="folder for the scenes (created)")
    parser.add_argument("--scenes", type=int, default=4, metavar="N", help="number of scenes (default 4)")
    parser.add_argument("--size", type=int, default=512, metavar="PX", help="side of each scene in pixels (512)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the first scene (0)")
    parser.add_argument("--gsd", type=float, default=0.1, metavar="M", help="pixel size in metres (0.1)")
    parser.add_argument("--prefix", default="scene",
                        help="file name prefix: PREFIX_000_optical.tif, ...; one scene is just PREFIX_optical.tif")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    if args.scenes < 1:
        raise InputError(f"{option('--scenes')} must be at least 1, not {args.scenes}.")
    if args.size < 32:
        raise InputError(f"{option('--size')} must be at least 32 pixels, not {args.size}.")
    if not 0.01 <= args.gsd <= 2.0:
        raise InputError(f"{option('--gsd')} {args.gsd} m is outside 0.01-2 m; the scenes model 4-25 m objects.")
    if not args.prefix or "/" in args.prefix or args.prefix.startswith("."):
        raise InputError(f"{option('--prefix')} {args.prefix!r} must be a plain file name part, without '/' or a "
                         "leading '.'.")
    check_paths([PathArgument("--output-dir", Path(args.output_dir), FOLDER)])
    scenes = write_scenes(args.output_dir, args.scenes, args.size, args.seed, args.gsd, prefix=args.prefix,
                          progress=progress)
    for scene in scenes:
        shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in scene["class_shares"].items())
        progress.info(f"{scene['optical'].parent / scene['name']}_*.tif: {shares}")
    return {"output_dir": args.output_dir,
            "scenes": [{k: (str(v) if k in ("optical", "dsm", "labels") else v) for k, v in s.items()}
                       for s in scenes]}
