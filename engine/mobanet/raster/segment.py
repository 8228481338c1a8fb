"""The `segment` job: an optical raster (and a DSM, when there is one) in, a classified GeoTIFF (and friends) out.

Checks every input and every output path before the model loads, streams
the prediction to disk block by block, and writes all outputs through one
`OutputSet`: they are verified and renamed together only when all of them
are complete, so an error or an interrupt leaves nothing under the final
names.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from mobanet.card import ModelCard
from mobanet.classes import IGNORE_INDEX
from mobanet.errors import InputError
from mobanet.fileutil import GDAL_SIDECARS, Output, OutputSet
from mobanet.modelfile import load_model, read_card
from mobanet.pathcheck import OUTPUT, PathArgument, check_paths
from mobanet.progress import Progress
from mobanet.raster.blend import Block
from mobanet.raster.missing import check_dsm_needed, missing_dsm_cost, missing_dsm_note, uses_dsm
from mobanet.raster.polygon_style import store_polygon_style
from mobanet.raster.predict import RunStats, WindowPredictor, predict_blocks, resolve_device, resolve_window
from mobanet.raster.scene import DEFAULT_DSM_GAPS, Scene, aligned_source, coverage_warning, input_path, open_scene
from mobanet.raster.tiling import tiling_plan
from mobanet.raster.writers import (
    BlockRaster,
    class_raster,
    confidence_raster,
    qml_style,
    verify_polygons,
    write_polygons,
)
from mobanet.resources import default_model_path
from mobanet.wording import option

COPY_ROWS = 512  # rows per block when resampling model-grid results back onto the optical grid
RASTER_SUFFIXES = (".tif", ".tiff")
POLYGON_SUFFIXES = (".gpkg",)
MAX_UPSAMPLING = 4.0  # --resample-to-model-gsd: the model's pixels may be at most this many times finer


def segment_paths(optical: Path, dsm: Path | None, output: Path, model: Path, weights: Path | None, mask: Path | None,
                  confidence: Path | None, polygons: Path | None) -> list[PathArgument]:
    """Every path `segment` reads or writes, the style it derives from ``output`` included."""
    raster = dict(suffixes=RASTER_SUFFIXES, format="GeoTIFF")
    return [PathArgument("--optical", optical), PathArgument("--dsm", dsm), PathArgument("--model", model),
            PathArgument("--weights", weights), PathArgument("--mask", mask),
            PathArgument("--output", output, OUTPUT, **raster),
            PathArgument("--output", output.with_suffix(".qml"), OUTPUT, derived="QGIS style"),
            PathArgument("--confidence", confidence, OUTPUT, **raster),
            PathArgument("--polygons", polygons, OUTPUT, suffixes=POLYGON_SUFFIXES, format="GeoPackage")]


class _ClassCounter:
    """Pixels per class value over everything written (for the class shares of the result)."""

    def __init__(self) -> None:
        self.counts = np.zeros(256, np.int64)

    def add(self, classes: np.ndarray) -> None:
        self.counts += np.bincount(classes.ravel(), minlength=256)

    def summary(self, class_names: list[str]) -> dict:
        valid = int(self.counts[:IGNORE_INDEX].sum())
        total = int(self.counts.sum())
        return {
            "valid_fraction": valid / total if total else 0.0,
            "class_pixels": {name: int(self.counts[i]) for i, name in enumerate(class_names)},
            "class_shares": {name: (float(self.counts[i]) / valid if valid else 0.0)
                             for i, name in enumerate(class_names)},
        }


def _write_blocks(blocks: Iterable[Block], classes: BlockRaster, confidence: BlockRaster | None,
                  counter: _ClassCounter | None) -> None:
    for block in blocks:
        classes.write(block.y, block.classes)
        if counter is not None:
            counter.add(block.classes)
        if confidence is not None and block.confidence is not None:
            confidence.write(block.y, block.confidence)


def _resampled_blocks(class_path: Path, confidence_path: Path | None, geotransform: tuple[float, ...],
                      width: int, height: int, projection: str) -> Iterable[Block]:
    """Model-grid results brought back onto the optical grid (nearest classes, bilinear confidence), by blocks."""
    srs = osr.SpatialReference(wkt=projection)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    classes = aligned_source(gdal.Open(str(class_path)), [1], geotransform, width, height, srs, resampleAlg="near")
    confidence = None
    if confidence_path is not None:
        confidence = aligned_source(gdal.Open(str(confidence_path)), [1], geotransform, width, height, srs,
                                    resampleAlg="bilinear")
    for y in range(0, height, COPY_ROWS):
        rows = min(COPY_ROWS, height - y)
        values, valid = classes.read(0, y, width, rows)
        block_classes = np.where(valid, values[0], IGNORE_INDEX).astype(np.uint8)
        block_confidence = None
        if confidence is not None:
            block_confidence = np.nan_to_num(confidence.read(0, y, width, rows)[0][0]).astype(np.float32)
            block_confidence[block_classes == IGNORE_INDEX] = 0.0
        yield Block(y, block_classes, block_confidence)


def _check_options(batch_size: int, min_area: float) -> None:
    if batch_size < 1:
        raise InputError(f"{option('--batch-size')} {batch_size} must be at least 1.")
    if min_area < 0:
        raise InputError(f"{option('--min-area')} {min_area} must not be negative.")


def segment(optical: str | Path, dsm: str | Path | None, output: str | Path, model: str | Path | None = None,
            weights: str | Path | None = None, bands: list[int] | None = None, window: int | None = None,
            overlap: float | None = None, margin: int | None = None, batch_size: int = 4, device: str = "auto",
            extent: tuple[float, float, float, float] | None = None, mask: str | Path | None = None,
            confidence: str | Path | None = None, polygons: str | Path | None = None, min_area: float = 0.0,
            cog: bool = False, resample_to_model_gsd: bool = False, ray: str | None = None,
            workers: int | None = None, tile_size: int | None = None, dsm_gaps: str = DEFAULT_DSM_GAPS,
            progress: Progress | None = None) -> dict:
    """Classify ``optical`` + ``dsm`` with a model into ``output`` (see module docstring); returns a summary.

    Outputs: ``output`` (uint8 GeoTIFF on the optical grid, or on the part the
    extent selects), ``output`` with suffix .qml (QGIS style), and optionally
    ``confidence`` (float32 top-class probability) and ``polygons`` (GPKG).
    ``overlap`` or ``margin`` choose the tiling plan (`mobanet.raster.tiling`;
    neither: the default plan). The summary's ``warnings`` repeat what was reported while running.
    ``ray`` ("local" or a cluster address) computes the prediction as tiles on
    Ray workers (`mobanet.distributed`), then writes the same outputs from them.
    ``dsm`` None: no DSM, the model predicts from the optical image alone.
    ``dsm_gaps``: "predict" or "nodata" for pixels where the DSM has no data.
    """
    progress = progress if progress is not None else Progress("quiet")
    started = time.perf_counter()
    optical, output = input_path(optical), Path(output)
    dsm = input_path(dsm) if dsm is not None else None
    model_path = Path(model) if model else default_model_path()
    style = output.with_suffix(".qml")
    confidence = Path(confidence) if confidence else None
    polygons = Path(polygons) if polygons else None
    check_paths(segment_paths(optical, dsm, output, model_path, Path(weights) if weights else None,
                              Path(mask) if mask else None, confidence, polygons))
    plan = tiling_plan(overlap, margin)
    _check_options(batch_size, min_area)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        progress.warning(message)

    card = read_card(model_path)
    if dsm is None:
        check_dsm_needed(card, str(model_path))
    if bands and len(bands) != len(card.optical_bands):
        raise InputError(f"The model {model_path} takes {len(card.optical_bands)} optical bands (R,G,B) but "
                         f"{option('--bands')} gives {len(bands)} for {optical}; give exactly "
                         f"{len(card.optical_bands)} band numbers, e.g. 1,2,3.")
    gsd = None
    if resample_to_model_gsd:
        if card.gsd is None:
            warn(f"The model {model_path} records no ground sampling distance; not resampling.")
        else:
            gsd = card.gsd
    scene = open_scene(optical, dsm, card, bands=bands, extent=extent, mask=mask, dsm_gaps=dsm_gaps)
    output_grid = (scene.geotransform, scene.width, scene.height)
    for note in scene.notes:
        progress.info(note)
    coverage = scene.dsm_coverage
    if (message := coverage_warning(scene, extent is not None)) is not None:
        warn(message)
    if gsd is not None and scene.pixel_size[0] / gsd > MAX_UPSAMPLING:
        raise InputError(f"The model {model_path} was trained at {gsd:g} m pixels, much finer than the "
                         f"{scene.pixel_size[0]:g} m of {optical}: predicting at its pixel size would take "
                         f"{(scene.pixel_size[0] / gsd) ** 2:,.0f} times the work; drop "
                         f"{option('--resample-to-model-gsd')} or use a model trained near {scene.pixel_size[0]:g} m.")
    if gsd is not None and not math.isclose(gsd, scene.pixel_size[0], rel_tol=0.01):
        scene.close()
        scene = open_scene(optical, dsm, card, bands=bands, extent=extent, mask=mask, gsd=gsd, dsm_gaps=dsm_gaps)
        progress.info(f"Predicting at the model's {gsd:g} m pixel size ({scene.width} x {scene.height}), "
                      "then back onto the optical grid.")
    resampled = scene.geotransform != output_grid[0] or (scene.width, scene.height) != output_grid[1:]

    gap_share = missing_note = None
    if dsm is None:
        missing_note = missing_dsm_note(card, str(model_path))
        # the whole result is less accurate than with a DSM: a warning (in the summary too), unless it reads none
        (warn if uses_dsm(card) else progress.info)(missing_note)
    else:
        gap_share = scene.dsm_gap_share()
        if dsm_gaps == "predict" and gap_share > 0:
            missing_note = missing_dsm_note(card, str(model_path), gap_share)
            progress.info(missing_note)
    stats = RunStats()
    tiles = None
    if ray is not None:  # every tile computed on Ray first; the outputs below are assembled from the tile store
        from mobanet.distributed import TileJob, run_tiles  # Ray is optional: imported only when asked for

        job = TileJob(str(optical), str(dsm) if dsm is not None else None, str(model_path),
                      str(weights) if weights else None, bands, extent, str(mask) if mask else None, gsd, window,
                      plan, batch_size, device, confidence is not None, scene.optical_normalizer,
                      scene.dsm_normalizer, dsm_gaps)
        tiles = run_tiles(job, scene, card, output, ray, workers, tile_size, stats, progress)
        size, device_name, blocks = tiles.window, tiles.device, tiles.blocks()
    else:
        torch_device = resolve_device(device)
        progress.info(f"Loading model {model_path} on {torch_device}.")
        network, card = load_model(model_path, weights=weights, device=torch_device)
        patch = int(getattr(network, "patch_size", 1))
        size = resolve_window(window, card, patch, (scene.width, scene.height))
        if window is not None and size != window:
            progress.info(f"Window {window} px became {size} px: a multiple of the model's {patch} px patch, no "
                          "larger than the scene needs, and within the largest window one model call takes.")
        plan.check_window(size)  # a margin too wide for the window fails here, before any output is opened
        predictor = WindowPredictor(network, torch_device, batch_size, progress)
        device_name = str(torch_device)
        blocks = predict_blocks(predictor, card.num_classes, scene, size, plan, batch_size,
                                confidence is not None, progress, stats)
    counter = _ClassCounter()
    polygon_count = None
    try:
        with OutputSet() as outputs:
            class_output = outputs.add(output, sidecars=GDAL_SIDECARS)
            confidence_output = outputs.add(confidence, sidecars=GDAL_SIDECARS) if confidence else None
            _predict_files(scene, blocks, card, outputs, class_output, confidence_output, output_grid, resampled,
                           cog, counter)
            if counter.counts[:IGNORE_INDEX].sum() == 0:
                raise _no_valid_pixel(optical, dsm, dsm_gaps, bool(extent or mask))
            outputs.write_text(style, qml_style(card.class_names, card.class_colors))
            if polygons is not None:
                progress.info(f"Polygonising into {polygons}.")
                polygon_output = outputs.add(polygons)
                polygon_count = write_polygons(polygon_output.temp, class_output.temp, card.class_names, min_area,
                                               final=polygons)
                store_polygon_style(polygon_output.temp, card.class_names, card.class_colors, final=polygons)
                polygon_output.verify = lambda path: verify_polygons(path, polygon_count, polygons)
            progress.info("Verifying and committing the outputs.")
    finally:
        scene.close()
    if tiles is not None:
        tiles.discard()  # the outputs are complete: the tile store has served its purpose
    geotransform, width, height = output_grid
    return {
        "output": str(output), "style": str(style),
        "confidence": str(confidence) if confidence else None,
        "polygons": str(polygons) if polygons else None, "polygon_count": polygon_count,
        "model": str(model_path), "dsm": str(dsm) if dsm is not None else None, "dsm_absent": dsm is None,
        "dsm_gaps": dsm_gaps if dsm is not None else None,
        "dsm_gap_share": round(gap_share, 4) if gap_share is not None else None, "missing_dsm_note": missing_note,
        "missing_dsm_cost": missing_dsm_cost(card) if missing_note else None,
        "device": device_name, "window": size, **plan.summary(),
        "batch_size": stats.batch_size, "width": width, "height": height, "geotransform": list(geotransform),
        "windows": stats.windows, "windows_predicted": stats.windows_predicted,
        "dsm_coverage": round(coverage, 4), **counter.summary(card.class_names), "warnings": warnings,
        "timings": {"model_s": round(stats.model_seconds, 3), "predict_s": round(stats.total_seconds, 3),
                    "total_s": round(time.perf_counter() - started, 3)},
        "megapixels_per_second": round(width * height / 1e6 / max(time.perf_counter() - started, 1e-9), 4),
        **(tiles.summary() if tiles is not None else {}),
    }


def _no_valid_pixel(optical: str | Path, dsm: str | Path | None, dsm_gaps: str, restricted: bool) -> InputError:
    where = " inside the extent/mask" if restricted else ""
    if dsm is None or dsm_gaps == "predict":
        return InputError(f"The optical raster {optical} has no valid pixel{where}; check its nodata value"
                          f"{' and the extent/mask' if restricted else ''}.")
    return InputError(f"The optical raster {optical} and the DSM {dsm} have no valid pixel in common{where}; check "
                      "their nodata values and that they cover the same area (or predict DSM gaps from the optical "
                      f"image alone: {option('--dsm-gaps')} predict).")


def _predict_files(scene: Scene, blocks: Iterator[Block], card: ModelCard, outputs: OutputSet,
                   class_output: Output, confidence_output: Output | None, output_grid: tuple, resampled: bool,
                   cog: bool, counter: _ClassCounter) -> None:
    """Write the predicted blocks into the class (and confidence) rasters, via the model grid when resampled.

    Sets each output's verifier: the finished raster must read back exactly as written.
    """
    geotransform, width, height = output_grid

    def open_rasters(cls_path: Path, conf_path: Path | None, grid: tuple, as_cog: bool,
                     stack: contextlib.ExitStack) -> tuple[BlockRaster, BlockRaster | None]:
        gt, w, h = grid
        classes = class_raster(cls_path, w, h, gt, scene.projection, card.class_names, card.class_colors, as_cog,
                               final=class_output.final)
        stack.callback(classes.discard)
        conf = None
        if conf_path is not None:
            conf = confidence_raster(conf_path, w, h, gt, scene.projection, as_cog, final=confidence_output.final)
            stack.callback(conf.discard)
        return classes, conf

    confidence_temp = confidence_output.temp if confidence_output is not None else None
    with contextlib.ExitStack() as stack:
        blocks = stack.enter_context(contextlib.closing(blocks))  # closing stops a reader thread early
        if resampled:  # predict on the model grid into scratch files, then bring them back onto the optical grid
            scratch_classes = outputs.scratch(class_output.final, "model")
            scratch_conf = outputs.scratch(confidence_output.final, "model") if confidence_output else None
            model_grid = (scene.geotransform, scene.width, scene.height)
            classes, conf = open_rasters(scratch_classes, scratch_conf, model_grid, False, stack)
            _write_blocks(blocks, classes, conf, None)
            for raster in (classes, conf):
                if raster is not None:
                    raster.close()
            blocks = _resampled_blocks(scratch_classes, scratch_conf, geotransform, width, height, scene.projection)
        classes, conf = open_rasters(class_output.temp, confidence_temp, output_grid, cog, stack)
        _write_blocks(blocks, classes, conf, counter)
        classes.close()
        class_output.verify = classes.verify
        if conf is not None:
            conf.close()
            confidence_output.verify = conf.verify
