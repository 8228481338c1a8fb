"""`mobanet segment`: classify an optical raster (+ DSM) into a GeoTIFF on the optical grid.

The optical raster defines the output grid; the DSM is aligned to it on the
fly, whatever its CRS, pixel size or extent. Without --dsm the model predicts
from the optical image alone (the log says what that costs this model); where
a given DSM has no data, --dsm-gaps says whether to predict those pixels the
same way or leave them nodata (255). Writes OUTPUT, OUTPUT's .qml style beside
it, and optionally a confidence raster and class polygons.
"""

from __future__ import annotations

import argparse

from mobanet.commands import HelpFormatter, band_list
from mobanet.errors import InputError
from mobanet.progress import Progress
from mobanet.raster.scene import DEFAULT_DSM_GAPS, DSM_GAP_MODES
from mobanet.wording import option


def _extent(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected xmin,ymin,xmax,ymax, got {text!r}") from exc
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected 4 numbers xmin,ymin,xmax,ymax, got {text!r}")
    return values  # type: ignore[return-value]


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "segment", parents=parents, help="classify an optical raster (+ DSM) into a GeoTIFF",
        description=__doc__.split("\n\n")[1], formatter_class=HelpFormatter)
    parser.add_argument("--optical", required=True, metavar="A", help="optical raster (defines the output grid)")
    parser.add_argument("--dsm", metavar="B",
                        help="DSM raster (heights in metres, any CRS); without it the model predicts from the "
                             "optical image alone, at the accuracy cost its model card records")
    parser.add_argument("--dsm-gaps", choices=DSM_GAP_MODES, default=DEFAULT_DSM_GAPS,
                        help="pixels where the DSM has nodata or no coverage: predict them from the optical image "
                             f"alone, or leave them nodata (default: {DEFAULT_DSM_GAPS}: in the ablation, "
                             "benchmarks/results/ablation.md, pixels in DSM gaps score mIoU 51.9 predicted, against "
                             "77.6 with the DSM there; nodata gives them no class)")
    parser.add_argument("--output", required=True, metavar="OUT.tif", help="classified GeoTIFF to write")
    parser.add_argument("--model", metavar="M", help="model file (.safetensors); default: the embedded model")
    parser.add_argument("--weights", metavar="FILE",
                        help="backbone weights, for model files that hold only the trained adapter")
    parser.add_argument("--bands", type=band_list, metavar="1,2,3",
                        help="optical band numbers in R,G,B order (default: the model card's)")
    parser.add_argument("--window", type=int, metavar="N",
                        help="window size in pixels (default: the model's); at most 64 patches (896 px) and no "
                             "larger than the scene")
    tiling = parser.add_mutually_exclusive_group()
    tiling.add_argument("--overlap", type=float, metavar="F",
                        help="windows overlap by this fraction, blended smoothly. Default (neither option): "
                             "overlap 0.5, kept because no faster layout agrees with the dense reference on >= "
                             "99.5 %% of pixels at <= 0.2 mIoU points lost (benchmarks/results/tiling.md)")
    tiling.add_argument("--margin", type=int, metavar="PX",
                        help="each window keeps only its centre, PX pixels of context cut off on every side; "
                             "the centres tile the image, so each pixel is predicted once")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="windows per model call")
    parser.add_argument("--device", default="auto", metavar="auto|cpu|cuda:0", help="where the model runs")
    parser.add_argument("--extent", type=_extent, metavar="xmin,ymin,xmax,ymax",
                        help="process only this area (optical CRS); the output covers it")
    parser.add_argument("--mask", metavar="POLY.gpkg", help="predict only inside these polygons")
    parser.add_argument("--confidence", metavar="C.tif", help="also write the top-class probability")
    parser.add_argument("--polygons", metavar="P.gpkg", help="also write class polygons (GeoPackage)")
    parser.add_argument("--min-area", type=float, default=0.0, metavar="M2",
                        help="drop polygons smaller than this (square CRS units, m²)")
    parser.add_argument("--cog", action="store_true", help="write Cloud Optimized GeoTIFFs")
    parser.add_argument("--resample-to-model-gsd", action="store_true",
                        help="predict at the model's pixel size, then resample back onto the optical grid")
    distributed = parser.add_argument_group(
        "distributed (Ray)", "Predict tiles on Ray workers; the outputs equal a single-process run. Finished tiles "
        "are kept beside OUT.tif until the outputs are complete: rerun the same command to resume.")
    distributed.add_argument("--ray", metavar="ADDRESS|local",
                             help="'local': a private Ray instance on this machine; HOST:PORT: join that cluster "
                                  "(`ray start --head` prints it); needs pip install 'mobanet[ray]'")
    distributed.add_argument("--workers", type=int, metavar="N",
                             help="Ray workers, each with the model loaded once (default: one per GPU, else one "
                                  "per machine)")
    distributed.add_argument("--tile-size", type=int, metavar="N",
                             help="tile side in pixels (default 2048; at least the window)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, progress: Progress) -> dict:
    from mobanet.raster.segment import segment  # torch loads only when a command needs it

    if args.min_area and not args.polygons:
        raise InputError(f"{option('--min-area')} applies to polygons; also give {option('--polygons')} or drop "
                         f"{option('--min-area')}.")
    for name, value in (("--workers", args.workers), ("--tile-size", args.tile_size)):
        if value is not None and not args.ray:
            raise InputError(f"{option(name)} applies to distributed runs; also give {option('--ray')} local (or "
                             f"HOST:PORT) or drop {option(name)}.")
    if args.dsm is None and args.dsm_gaps != DEFAULT_DSM_GAPS:
        raise InputError(f"{option('--dsm-gaps')} applies to a given DSM; add {option('--dsm')} B or drop "
                         f"{option('--dsm-gaps')}.")
    return segment(args.optical, args.dsm, args.output, model=args.model, weights=args.weights, bands=args.bands,
                   window=args.window, overlap=args.overlap, margin=args.margin, batch_size=args.batch_size,
                   device=args.device, extent=args.extent, mask=args.mask, confidence=args.confidence,
                   polygons=args.polygons, min_area=args.min_area, cog=args.cog,
                   resample_to_model_gsd=args.resample_to_model_gsd, ray=args.ray, workers=args.workers,
                   tile_size=args.tile_size, dsm_gaps=args.dsm_gaps, progress=progress)
