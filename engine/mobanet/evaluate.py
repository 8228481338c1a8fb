"""Score a classified raster against a reference on the same grid, ISPRS style.

The prediction is a single-band class raster (as `mobanet segment` writes it:
uint8 indices, 255 nodata, class names as category names). The reference is a
class-index raster or an ISPRS colour-coded RGB raster on the same grid. Both
are read in strips of rows, so rasters of any size fit in memory; an eroded
evaluation reads each reference strip with a margin so that borders between
strips are eroded exactly as in the whole image.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal

from mobanet.classes import CLUTTER_NAME, ISPRS_CLASSES
from mobanet.errors import InputError
from mobanet.fileutil import OutputSet
from mobanet.labels import (
    RasterGrid,
    classes_from_index,
    describe_grid,
    grid_offset,
    is_color_coded,
    open_raster,
    read_raster_labels,
)
from mobanet.metrics import confusion_matrix, erode_boundaries, scores
from mobanet.pathcheck import OUTPUT, PathArgument, check_paths
from mobanet.progress import Progress
from mobanet.wording import option

STRIP_ROWS = 512
REPORT_FORMATS = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


def prediction_classes(dataset: gdal.Dataset) -> tuple[list[str], list[tuple[int, int, int]] | None]:
    """Class names and colours of a classified raster: its category names and colour table, else ISPRS."""
    dataset.GetGeoTransform()  # GDAL 3.6 GTiff loads the .aux.xml (where category names live) only after this
    band = dataset.GetRasterBand(1)
    names = list(band.GetCategoryNames() or [])
    while names and not names[-1]:
        names.pop()
    if not names:
        return [c.name for c in ISPRS_CLASSES], [c.color for c in ISPRS_CLASSES]
    return names, _colours_for(names, band.GetColorTable())


def _colours_for(names: list[str], table: gdal.ColorTable | None) -> list[tuple[int, int, int]] | None:
    if table is not None and table.GetCount() >= len(names):
        return [tuple(table.GetColorEntry(i)[:3]) for i in range(len(names))]
    isprs = {c.name: c.color for c in ISPRS_CLASSES}
    if all(name in isprs for name in names):
        return [isprs[name] for name in names]
    return None


def _check_same_grid(prediction: gdal.Dataset, prediction_path: Path, reference: gdal.Dataset,
                     reference_path: Path) -> None:
    grid = RasterGrid(prediction.RasterXSize, prediction.RasterYSize, tuple(prediction.GetGeoTransform()),
                      prediction.GetProjection(), str(prediction_path))
    same_size = (reference.RasterXSize, reference.RasterYSize) == (grid.width, grid.height)
    if not same_size or grid_offset(reference, grid) != (0, 0):
        theirs = describe_grid(reference.RasterXSize, reference.RasterYSize, reference.GetGeoTransform(),
                               reference.GetProjection())
        ours = describe_grid(grid.width, grid.height, grid.geotransform, grid.projection)
        raise InputError(
            f"Prediction {prediction_path} ({ours}) and reference {reference_path} ({theirs}) are not on the same "
            f"grid; warp the reference onto the prediction, e.g. `gdalwarp -r near -te <xmin ymin xmax ymax> "
            f"-tr <pixel size> -t_srs <CRS> {reference_path} reference_aligned.tif`.")


def _confusion(prediction: gdal.Dataset, prediction_path: Path, reference: gdal.Dataset, reference_path: Path,
               colours: list[tuple[int, int, int]], erosion_radius: int, progress: Progress) -> np.ndarray:
    """Confusion matrix over the whole grid, strip by strip."""
    num_classes = len(colours)
    width, height = prediction.RasterXSize, prediction.RasterYSize
    band = prediction.GetRasterBand(1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    starts = range(0, height, STRIP_ROWS)
    with progress.task(len(starts), "Evaluating", unit="strip") as task:
        for top in starts:
            rows = min(STRIP_ROWS, height - top)
            predicted = classes_from_index(band.ReadAsArray(0, top, width, rows), num_classes,
                                           band.GetNoDataValue(), prediction_path, what="Prediction")
            margin_top = min(erosion_radius, top)
            margin_bottom = min(erosion_radius, height - top - rows)
            truth = read_raster_labels(reference, reference_path, 0, top - margin_top, width,
                                       rows + margin_top + margin_bottom, colours)
            if erosion_radius:
                truth = erode_boundaries(truth, erosion_radius)
            matrix += confusion_matrix(predicted, truth[margin_top: margin_top + rows], num_classes)
            task.update()
    return matrix


def evaluate(prediction: str | Path, reference: str | Path, eroded: bool = False, radius: int = 3,
             json_path: str | Path | None = None, report_path: str | Path | None = None,
             progress: Progress | None = None, class_names: list[str] | None = None) -> dict[str, Any]:
    """ISPRS scores of ``prediction`` against ``reference`` (see `mobanet.metrics.scores` for the keys).

    ``eroded`` ignores reference pixels within ``radius`` pixels of a class
    border. ``class_names`` overrides the class list read from the prediction
    raster. ``json_path`` and ``report_path`` (.md or .html) are committed together, verified.
    """
    progress = progress or Progress("quiet")
    prediction, reference = Path(prediction), Path(reference)
    check_paths([PathArgument("--prediction", prediction), PathArgument("--reference", reference),
                 PathArgument("--json", Path(json_path) if json_path else None, OUTPUT),
                 PathArgument("--report", Path(report_path) if report_path else None, OUTPUT,
                              suffixes=tuple(REPORT_FORMATS), format="Markdown or HTML")])
    report_format = REPORT_FORMATS.get(Path(report_path).suffix.lower()) if report_path else None
    if eroded and radius < 1:
        raise InputError(f"{option('--erosion-radius')} must be at least 1 pixel, not {radius}.")

    predicted = open_raster(prediction, "Prediction")
    truth = open_raster(reference, "Reference")
    if predicted.RasterCount != 1:
        raise InputError(f"Prediction {prediction} has {predicted.RasterCount} bands; give the single-band class "
                         "raster that `mobanet segment` writes.")
    names, colours = prediction_classes(predicted)
    if class_names:
        names = list(class_names)
        colours = _colours_for(names, predicted.GetRasterBand(1).GetColorTable())
    if colours is None:
        if is_color_coded(truth):
            raise InputError(f"Reference {reference} is colour-coded, but the classes {', '.join(names)} have no "
                             f"colours: give {prediction} a colour table, or use a class-index reference.")
        colours = [(0, 0, 0)] * len(names)  # index references only need the class count
    _check_same_grid(predicted, prediction, truth, reference)

    matrix = _confusion(predicted, prediction, truth, reference, colours, radius if eroded else 0, progress)
    if matrix.sum() == 0:
        raise InputError(f"No pixel has both a prediction in {prediction} and a label in {reference}"
                         + (" after eroding class borders" if eroded else "") + "; check that they overlap.")
    mean_classes = [i for i, name in enumerate(names) if name != CLUTTER_NAME]
    metrics = {"prediction": str(prediction), "reference": str(reference), "eroded": eroded,
               "erosion_radius": radius if eroded else 0, **scores(matrix, names, mean_classes)}
    with OutputSet() as outputs:
        if json_path is not None:
            outputs.write_text(json_path, json.dumps(_json_safe(metrics), indent=2) + "\n")
        if report_path is not None:
            outputs.write_text(report_path, format_report(metrics, report_format))
    return metrics


def _json_safe(value: Any) -> Any:
    """NaN (an undefined score) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


# -- reports ---------------------------------------------------------------------------------------------

def _percent(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def _tables(metrics: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's content as (title, header, rows) tables, shared by Markdown and HTML."""
    names = metrics["class_names"]
    summary = [["overall accuracy (%)", _percent(metrics["overall_accuracy"])],
               [f"mIoU, {len(metrics['mean_classes'])} classes without clutter (%)", _percent(metrics["miou"])],
               [f"mF1, {len(metrics['mean_classes'])} classes without clutter (%)", _percent(metrics["mf1"])],
               [f"mIoU, all {len(names)} classes (%)", _percent(metrics["miou_all"])],
               [f"mF1, all {len(names)} classes (%)", _percent(metrics["mf1_all"])],
               ["kappa", "n/a" if not math.isfinite(metrics["kappa"]) else f"{metrics['kappa']:.4f}"],
               ["pixels scored", f"{metrics['pixels']:,}"]]
    per_class = [[name, _percent(s["f1"]), _percent(s["iou"]), _percent(s["precision"]), _percent(s["recall"]),
                  f"{s['support']:,}"] for name, s in metrics["per_class"].items()]
    matrix = [[name, *(f"{v:,}" for v in row)] for name, row in zip(names, metrics["confusion_matrix"], strict=True)]
    return [("Scores", ["score", "value"], summary),
            ("Per class (%)", ["class", "F1", "IoU", "precision", "recall", "reference pixels"], per_class),
            ("Confusion matrix (rows: reference, columns: prediction)", ["reference \\ prediction", *names], matrix)]


def _subtitle(metrics: dict[str, Any]) -> str:
    erosion = (f"eroded reference: pixels within {metrics['erosion_radius']} px of class borders ignored"
               if metrics["eroded"] else "full reference (no border erosion)")
    return f"Prediction {metrics['prediction']} against reference {metrics['reference']}; {erosion}."


def format_report(metrics: dict[str, Any], fmt: str) -> str:
    """The metrics as a Markdown (``"md"``) or HTML (``"html"``) document."""
    if fmt == "md":
        lines = ["# MoBaNet evaluation", "", _subtitle(metrics)]
        for title, header, rows in _tables(metrics):
            lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |",
                      "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    if fmt == "html":
        parts = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\"><title>MoBaNet evaluation</title>",
                 "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1em}"
                 "td,th{border:1px solid #bbb;padding:2px 8px}td{text-align:right}td:first-child{text-align:left}"
                 "</style></head><body>", "<h1>MoBaNet evaluation</h1>", f"<p>{html.escape(_subtitle(metrics))}</p>"]
        for title, header, rows in _tables(metrics):
            parts.append(f"<h2>{html.escape(title)}</h2><table>")
            parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"
    raise ValueError(f"unknown report format {fmt!r}; use 'md' or 'html'")
