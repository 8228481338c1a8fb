"""The `segment` job: an optical raster and a DSM in, a classified GeoTIFF (and friends) out.

Checks every input before the model loads, streams the prediction to disk
block by block, and writes each output under a temporary name that is renamed
only when all of them are complete: an error or an interrupt leaves nothing
under the final names.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from osgeo import gdal

from mobanet.card import ModelCard
from mobanet.classes import IGNORE_INDEX
from mobanet.errors import InputError
from mobanet.fileutil import atomic_output, check_writable
from mobanet.modelfile import load_model, read_card
from mobanet.progress import Progress
from mobanet.raster.blend import Block
from mobanet.raster.predict import RunStats, WindowPredictor, predict_blocks, resolve_device, resolve_window
from mobanet.raster.scene import Scene, open_scene
from mobanet.raster.writers import BlockRaster, class_raster, confidence_raster, write_polygons, write_qml
from mobanet.resources import default_model_path

COPY_ROWS = 512  # rows per block when resampling model-grid results back onto the optical grid


def _check_outputs(outputs: list[Path], inputs: tuple[Path | None, ...]) -> None:
    named = [p.resolve() for p in outputs]
    if len(set(named)) != len(named):
        raise InputError(f"Two outputs share a file name ({', '.join(map(str, outputs))}); give each its own.")
    for path in outputs:
        check_writable(path, tuple(str(p) for p in inputs if p is not None))


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
                      width: int, height: int) -> Iterable[Block]:
    """Model-grid results warped back onto the optical grid (nearest classes, bilinear confidence), by blocks."""
    bounds = (geotransform[0], geotransform[3] + height * geotransform[5],
              geotransform[0] + width * geotransform[1], geotransform[3])

    def warped(path: Path, resampling: str) -> gdal.Dataset:
        return gdal.Warp("", str(path), format="VRT", outputBounds=bounds, width=width, height=height,
                         resampleAlg=resampling)

    classes = warped(class_path, "near")
    confidence = warped(confidence_path, "bilinear") if confidence_path is not None else None
    for y in range(0, height, COPY_ROWS):
        rows = min(COPY_ROWS, height - y)
        block_classes = classes.ReadAsArray(0, y, width, rows).astype(np.uint8)
        block_confidence = None
        if confidence is not None:
            block_confidence = confidence.ReadAsArray(0, y, width, rows).astype(np.float32)
            block_confidence[block_classes == IGNORE_INDEX] = 0.0
        yield Block(y, block_classes, block_confidence)


def segment(optical: str | Path, dsm: str | Path, output: str | Path, model: str | Path | None = None,
            weights: str | Path | None = None, bands: list[int] | None = None, window: int | None = None,
            overlap: float = 0.5, batch_size: int = 4, device: str = "auto",
            extent: tuple[float, float, float, float] | None = None, mask: str | Path | None = None,
            confidence: str | Path | None = None, polygons: str | Path | None = None, min_area: float = 0.0,
            cog: bool = False, resample_to_model_gsd: bool = False, progress: Progress | None = None) -> dict:
    """Classify ``optical`` + ``dsm`` with a model into ``output`` (see module docstring); returns a summary.

    Outputs: ``output`` (uint8 GeoTIFF on the optical grid, or on the part the
    extent selects), ``output`` with suffix .qml (QGIS style), and optionally
    ``confidence`` (float32 top-class probability) and ``polygons`` (GPKG).
    """
    progress = progress if progress is not None else Progress("quiet")
    started = time.perf_counter()
    optical, dsm, output = Path(optical), Path(dsm), Path(output)
    model_path = Path(model) if model else default_model_path()
    style = output.with_suffix(".qml")
    confidence = Path(confidence) if confidence else None
    polygons = Path(polygons) if polygons else None
    outputs = [p for p in (output, style, confidence, polygons) if p is not None]
    _check_outputs(outputs, (optical, dsm, model_path, Path(mask) if mask else None,
                             Path(weights) if weights else None))
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"Overlap {overlap} is out of range; use a fraction in [0, 1), e.g. 0.5.")
    if batch_size < 1:
        raise InputError(f"Batch size {batch_size} must be at least 1.")
    if min_area < 0:
        raise InputError(f"Minimum polygon area {min_area} must not be negative.")

    card = read_card(model_path)
    if bands and len(bands) != len(card.optical_bands):
        raise InputError(f"The model {model_path} takes {len(card.optical_bands)} optical bands (R,G,B) but "
                         f"--bands gives {len(bands)} for {optical}; pass exactly {len(card.optical_bands)} "
                         "band numbers, e.g. --bands 1,2,3.")
    gsd = None
    if resample_to_model_gsd:
        if card.gsd is None:
            progress.warning(f"The model {model_path} records no ground sampling distance; not resampling.")
        else:
            gsd = card.gsd
    scene = open_scene(optical, dsm, card, bands=bands, extent=extent, mask=mask)
    output_grid = (scene.geotransform, scene.width, scene.height)
    if gsd is not None and not math.isclose(gsd, scene.pixel_size[0], rel_tol=0.01):
        scene.close()
        scene = open_scene(optical, dsm, card, bands=bands, extent=extent, mask=mask, gsd=gsd)
        progress.info(f"Predicting at the model's {gsd:g} m pixel size ({scene.width} x {scene.height}), "
                      "then back onto the optical grid.")
    resampled = scene.geotransform != output_grid[0] or (scene.width, scene.height) != output_grid[1:]

    torch_device = resolve_device(device)
    progress.info(f"Loading model {model_path} on {torch_device}.")
    network, card = load_model(model_path, weights=weights, device=torch_device)
    size = resolve_window(window, card, int(getattr(network, "patch_size", 1)))
    if window is not None and size != window:
        progress.info(f"Window {window} px rounded up to {size} px, a multiple of the model's patch size.")
    predictor = WindowPredictor(network, torch_device, batch_size, progress)
    stats = RunStats()
    counter = _ClassCounter()
    polygon_count = None
    try:
        with contextlib.ExitStack() as stack:
            temp = {path: stack.enter_context(atomic_output(path)) for path in outputs}
            _predict_files(scene, predictor, card, size, overlap, batch_size, temp[output],
                           temp.get(confidence) if confidence else None, output_grid, resampled, cog, counter,
                           stats, progress, stack)
            if counter.counts[:IGNORE_INDEX].sum() == 0:
                raise InputError(f"The optical raster {optical} and the DSM {dsm} have no valid pixel in common"
                                 f"{' inside the extent/mask' if extent or mask else ''}; check their nodata "
                                 "values and that they cover the same area.")
            write_qml(temp[style], card.class_names, card.class_colors)
            if polygons is not None:
                progress.info(f"Polygonising into {polygons}.")
                polygon_count = write_polygons(temp[polygons], temp[output], card.class_names, min_area)
    finally:
        scene.close()
    geotransform, width, height = output_grid
    return {
        "output": str(output), "style": str(style),
        "confidence": str(confidence) if confidence else None,
        "polygons": str(polygons) if polygons else None, "polygon_count": polygon_count,
        "model": str(model_path), "device": str(torch_device), "window": size, "overlap": overlap,
        "batch_size": stats.batch_size, "width": width, "height": height, "geotransform": list(geotransform),
        "windows": stats.windows, "windows_predicted": stats.windows_predicted,
        **counter.summary(card.class_names),
        "timings": {"model_s": round(stats.model_seconds, 3), "predict_s": round(stats.total_seconds, 3),
                    "total_s": round(time.perf_counter() - started, 3)},
        "megapixels_per_second": round(width * height / 1e6 / max(time.perf_counter() - started, 1e-9), 4),
    }


def _predict_files(scene: Scene, predictor: WindowPredictor, card: ModelCard, size: int, overlap: float,
                   batch_size: int, class_path: Path, confidence_path: Path | None,
                   output_grid: tuple, resampled: bool, cog: bool, counter: _ClassCounter, stats: RunStats,
                   progress: Progress, stack: contextlib.ExitStack) -> None:
    """Run the window loop into the class (and confidence) rasters, via the model grid when resampled."""
    geotransform, width, height = output_grid

    def open_rasters(cls_path: Path, conf_path: Path | None, grid: tuple, as_cog: bool
                     ) -> tuple[BlockRaster, BlockRaster | None]:
        gt, w, h = grid
        classes = class_raster(cls_path, w, h, gt, scene.projection, card.class_names, card.class_colors, as_cog)
        stack.callback(classes.discard)
        conf = None
        if conf_path is not None:
            conf = confidence_raster(conf_path, w, h, gt, scene.projection, as_cog)
            stack.callback(conf.discard)
        return classes, conf

    blocks = stack.enter_context(contextlib.closing(predict_blocks(  # closing stops the reader thread early
        predictor, card.num_classes, scene, size, overlap, batch_size, confidence_path is not None, progress, stats)))
    if not resampled:
        classes, conf = open_rasters(class_path, confidence_path, output_grid, cog)
        _write_blocks(blocks, classes, conf, counter)
    else:  # predict on the model grid into scratch files, then warp back onto the optical grid
        scratch_classes = class_path.with_name(class_path.stem + ".model.tif")
        scratch_conf = None
        if confidence_path is not None:
            scratch_conf = confidence_path.with_name(confidence_path.stem + ".model.tif")
        stack.callback(_remove, scratch_classes, scratch_conf)
        model_grid = (scene.geotransform, scene.width, scene.height)
        classes, conf = open_rasters(scratch_classes, scratch_conf, model_grid, False)
        _write_blocks(blocks, classes, conf, None)
        classes.close()
        if conf is not None:
            conf.close()
        classes, conf = open_rasters(class_path, confidence_path, output_grid, cog)
        _write_blocks(_resampled_blocks(scratch_classes, scratch_conf, geotransform, width, height),
                      classes, conf, counter)
    classes.close()
    if conf is not None:
        conf.close()


def _remove(*paths: Path | None) -> None:
    """Delete scratch rasters (and their GDAL sidecars)."""
    for path in paths:
        if path is not None and path.exists():
            gdal.GetDriverByName("GTiff").Delete(str(path))
