"""Reference labels on a raster grid, from whatever form a user has them in.

Three forms are read, all into uint8 class indices with 255 for "no label":

- a class-index raster (one band, values 0..K-1), on the grid;
- an ISPRS-style colour-coded RGB raster (each class painted in its colour), on the grid;
- vector polygons (GeoPackage, Shapefile, ...) whose attribute holds class
  indices or class names; they are rasterised onto the grid (reprojected
  when their CRS differs).

The grid is anything with ``width``, ``height``, ``geotransform`` and
``projection`` (WKT): a `mobanet.raster.Scene`, or a `RasterGrid` read from a
raster file. A label raster may be larger than the grid when its pixels line
up with it (same CRS and pixel size, whole-pixel offset): the grid's window is
read, so a cropped scene still finds its labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, ogr, osr

from mobanet.classes import IGNORE_INDEX
from mobanet.errors import InputError
from mobanet.wording import option

gdal.UseExceptions()
ogr.UseExceptions()

GRID_TOLERANCE = 0.01  # pixels: how far two grids' corners may differ and still be "the same grid"
CLASS_FIELD_GUESSES = ("class", "class_id", "classid", "class_name", "classname", "label", "category")


@dataclass
class RasterGrid:
    """The pixel grid of a raster: size, north-up geotransform and CRS (WKT)."""

    width: int
    height: int
    geotransform: tuple[float, ...]
    projection: str
    path: str | None = None

    @classmethod
    def from_dataset(cls, path: str | Path) -> RasterGrid:
        dataset = open_raster(path, "Raster")
        return cls(dataset.RasterXSize, dataset.RasterYSize, tuple(dataset.GetGeoTransform()),
                   dataset.GetProjection(), str(path))


def grid_name(grid: Any) -> str:
    """The file a grid comes from, for messages."""
    for attribute in ("path", "optical_path"):
        if getattr(grid, attribute, None):
            return str(getattr(grid, attribute))
    return "the target grid"


def open_raster(path: str | Path, what: str) -> gdal.Dataset:
    if not Path(path).exists():
        raise InputError(f"{what} {path} does not exist; check the path.")
    try:
        dataset = gdal.Open(str(path))
    except RuntimeError as exc:
        if Path(path).is_dir():
            raise InputError(f"{what} {path} is a folder, not a raster; give the raster file itself.") from exc
        raise InputError(f"Cannot open {what.lower()} {path} as a raster ({exc}); export it as GeoTIFF.") from exc
    if dataset is None or dataset.RasterCount == 0:
        raise InputError(f"{what} {path} holds no raster band; choose a raster file.")
    return dataset


def same_crs(wkt_a: str, wkt_b: str) -> bool:
    if not wkt_a or not wkt_b:
        return not wkt_a and not wkt_b
    a, b = osr.SpatialReference(wkt=wkt_a), osr.SpatialReference(wkt=wkt_b)
    return bool(a.IsSame(b))


def grid_offset(dataset: gdal.Dataset, grid: Any) -> tuple[int, int] | None:
    """Where the grid's first pixel sits in ``dataset`` (whole pixels), or None when the pixels do not line up."""
    gt, target = dataset.GetGeoTransform(), grid.geotransform
    if not same_crs(dataset.GetProjection(), grid.projection):
        return None
    if gt[2] != 0 or gt[4] != 0 or target[2] != 0 or target[4] != 0:
        return None
    span = max(grid.width, grid.height, 1)
    for ours, theirs in ((gt[1], target[1]), (gt[5], target[5])):  # pixel sizes: drift < tolerance over the grid
        if abs(ours - theirs) * span > GRID_TOLERANCE * abs(theirs):
            return None
    column, row = (target[0] - gt[0]) / gt[1], (target[3] - gt[3]) / gt[5]
    if abs(column - round(column)) > GRID_TOLERANCE or abs(row - round(row)) > GRID_TOLERANCE:
        return None
    column, row = round(column), round(row)
    if column < 0 or row < 0 or column + grid.width > dataset.RasterXSize or row + grid.height > dataset.RasterYSize:
        return None
    return column, row


def describe_grid(width: int, height: int, geotransform: tuple[float, ...], wkt: str) -> str:
    srs = osr.SpatialReference(wkt=wkt) if wkt else None
    crs = "no CRS"
    if srs is not None:
        srs.AutoIdentifyEPSG()
        code = srs.GetAuthorityCode(None)
        crs = f"EPSG:{code}" if code else (srs.GetName() or "unnamed CRS")
    return (f"{width} x {height} px, {crs}, origin ({geotransform[0]:.3f}, {geotransform[3]:.3f}), "
            f"pixel {geotransform[1]:g} x {abs(geotransform[5]):g}")


def grid_mismatch(path: str | Path, dataset: gdal.Dataset, grid: Any) -> InputError:
    theirs = describe_grid(dataset.RasterXSize, dataset.RasterYSize, dataset.GetGeoTransform(),
                           dataset.GetProjection())
    ours = describe_grid(grid.width, grid.height, grid.geotransform, grid.projection)
    return InputError(
        f"Labels {path} ({theirs}) are not on the grid of {grid_name(grid)} ({ours}). Warp them onto it, e.g. "
        f"`gdalwarp -r near -t_srs <CRS> -te <xmin ymin xmax ymax> -tr <pixel size> {path} aligned.tif`.")


# -- values to classes -------------------------------------------------------------------------------------

def classes_from_index(values: np.ndarray, num_classes: int, nodata: float | None, path: str | Path,
                       what: str = "Labels") -> np.ndarray:
    """Class indices from raster values: 0..K-1 kept, 255 and ``nodata`` become 255, anything else is an error."""
    values = np.asarray(values)
    ignore = values == IGNORE_INDEX
    if nodata is not None:
        ignore |= values == nodata
    if np.issubdtype(values.dtype, np.floating):
        ignore |= np.isnan(values)
    valid = ~ignore
    unknown = valid & ~((values >= 0) & (values < num_classes) & (values == np.round(values)))
    if unknown.any():
        found = np.unique(values[unknown])
        listed = ", ".join(f"{v:g}" for v in found[:10]) + (" ..." if found.size > 10 else "")
        raise InputError(f"{what} {path} hold values {listed} that are no class index: there are "
                         f"{num_classes} classes (0..{num_classes - 1}; 255 or nodata = no label). Recode them, "
                         "or pass the matching class list.")
    out = np.full(values.shape, IGNORE_INDEX, dtype=np.uint8)
    out[valid] = values[valid].astype(np.uint8)
    return out


def classes_from_colors(rgb: np.ndarray, class_colors: list[tuple[int, int, int]], path: str | Path,
                        no_label: np.ndarray | None = None) -> np.ndarray:
    """Class indices from colour-coded labels ``rgb`` [3, H, W]; ``no_label`` marks pixels without a label."""
    code = (rgb[0].astype(np.int32) << 16) | (rgb[1].astype(np.int32) << 8) | rgb[2].astype(np.int32)
    out = np.full(code.shape, IGNORE_INDEX, dtype=np.uint8)
    known = np.zeros(code.shape, dtype=bool)
    for index, (r, g, b) in enumerate(class_colors):
        hit = code == ((int(r) << 16) | (int(g) << 8) | int(b))
        out[hit] = index
        known |= hit
    unknown = ~known if no_label is None else ~known & ~no_label
    if no_label is not None:
        out[no_label] = IGNORE_INDEX
    if unknown.any():
        colours, counts = np.unique(code[unknown], return_counts=True)
        order = np.argsort(counts)[::-1][:5]
        listed = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255}) x{n}" for c, n in
                           zip(colours[order], counts[order], strict=True))
        expected = ", ".join(str(tuple(c)) for c in class_colors)
        raise InputError(f"Colour-coded labels {path} hold {colours.size} colour(s) of no class: {listed}. "
                         f"The class colours are {expected}; repaint those pixels or give them a nodata value.")
    return out


def is_color_coded(dataset: gdal.Dataset) -> bool:
    """Three or more bands (RGB or RGBA) are colour-coded labels; one band holds class indices."""
    return dataset.RasterCount >= 3


def read_raster_labels(dataset: gdal.Dataset, path: str | Path, x: int, y: int, width: int, height: int,
                       class_colors: list[tuple[int, int, int]]) -> np.ndarray:
    """Class indices of one window of an index or colour-coded label raster."""
    if is_color_coded(dataset):
        rgb = dataset.ReadAsArray(x, y, width, height, band_list=[1, 2, 3])
        no_label = np.zeros((height, width), dtype=bool)
        first = dataset.GetRasterBand(1)
        if dataset.RasterCount >= 4 and dataset.GetRasterBand(4).GetColorInterpretation() == gdal.GCI_AlphaBand:
            no_label |= dataset.GetRasterBand(4).ReadAsArray(x, y, width, height) == 0
        nodata = first.GetNoDataValue()
        if nodata is not None:
            no_label |= (rgb == nodata).all(axis=0)
        return classes_from_colors(rgb, class_colors, path, no_label)
    band = dataset.GetRasterBand(1)
    return classes_from_index(band.ReadAsArray(x, y, width, height), len(class_colors), band.GetNoDataValue(), path)


# -- the three forms ---------------------------------------------------------------------------------------

def _read_raster(path: str | Path, dataset: gdal.Dataset, grid: Any,
                 class_colors: list[tuple[int, int, int]]) -> np.ndarray:
    offset = grid_offset(dataset, grid)
    if offset is None:
        raise grid_mismatch(path, dataset, grid)
    return read_raster_labels(dataset, path, offset[0], offset[1], grid.width, grid.height, class_colors)


def _field_values_to_classes(layer: ogr.Layer, field: str, class_names: list[str], path: str | Path) -> dict:
    """Map each distinct value of ``field`` to a class index (integers as indices, text as names or digits)."""
    by_name = {name.lower(): i for i, name in enumerate(class_names)}
    mapping, unknown = {}, set()
    layer.ResetReading()
    for feature in layer:
        value = feature.GetField(field)
        if value is None or value in mapping or value in unknown:
            continue
        index = None
        if isinstance(value, (int, float)) and float(value).is_integer() and 0 <= value < len(class_names):
            index = int(value)
        elif isinstance(value, str):
            text = value.strip()
            index = by_name.get(text.lower())
            if index is None and text.isdigit() and int(text) < len(class_names):
                index = int(text)
        if index is None:
            unknown.add(value)
        else:
            mapping[value] = index
    layer.ResetReading()
    if unknown:
        listed = ", ".join(repr(v) for v in sorted(unknown, key=str)[:10])
        raise InputError(f"Field {field!r} of {path} holds values {listed} that are neither class indices "
                         f"(0..{len(class_names) - 1}) nor class names ({', '.join(class_names)}); recode them.")
    return mapping


def _sql_literal(value: Any) -> str:
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def _read_vector(path: str | Path, source: gdal.Dataset, grid: Any, class_names: list[str],
                 class_field: str | None) -> np.ndarray:
    if source.GetLayerCount() == 0:
        raise InputError(f"Labels {path} hold no vector layer and no raster; choose a label raster or polygons.")
    layer = source.GetLayer(0)
    definition = layer.GetLayerDefn()
    fields = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    if class_field is None:
        guesses = [f for f in fields if f.lower() in CLASS_FIELD_GUESSES]
        if not guesses:
            raise InputError(f"Labels {path} have no class field among {', '.join(fields) or '(no fields)'}; "
                             f"name the field holding class indices or names with {option('--class-field')}.")
        class_field = guesses[0]
    elif class_field not in fields:
        raise InputError(f"Labels {path} have no field {class_field!r}; set {option('--class-field')} to one of "
                         f"{', '.join(fields) or '(none)'}.")
    mapping = _field_values_to_classes(layer, class_field, class_names, path)
    target = gdal.GetDriverByName("MEM").Create("", grid.width, grid.height, 1, gdal.GDT_Byte)
    target.SetGeoTransform(tuple(grid.geotransform))
    target.SetProjection(grid.projection)
    target.GetRasterBand(1).Fill(IGNORE_INDEX)
    for index in sorted(set(mapping.values())):
        values = [v for v, i in mapping.items() if i == index]
        where = f'"{class_field}" IN ({", ".join(_sql_literal(v) for v in values)})'
        gdal.Rasterize(target, source, layers=[layer.GetName()], burnValues=[index], where=where)
    return target.GetRasterBand(1).ReadAsArray()


def read_labels(path: str | Path, grid: Any, class_names: list[str], class_colors: list[tuple[int, int, int]],
                class_field: str | None = None) -> np.ndarray:
    """Labels from ``path`` as uint8 [grid.height, grid.width] class indices, 255 where there is no label.

    ``class_field`` names the attribute of vector labels (indices or class
    names); without it a field called class/label/category/... is used.
    """
    if not Path(path).exists():
        raise InputError(f"Labels {path} do not exist; check the path.")
    try:
        source = gdal.OpenEx(str(path), gdal.OF_RASTER | gdal.OF_VECTOR)
    except RuntimeError as exc:
        if Path(path).is_dir():
            raise InputError(f"Labels {path} are a folder; give the label raster or polygon file itself.") from exc
        raise InputError(f"Cannot open labels {path} ({exc}); use a GeoTIFF or a GeoPackage/Shapefile.") from exc
    if source.RasterCount > 0:
        labels = _read_raster(path, source, grid, class_colors)
    else:
        labels = _read_vector(path, source, grid, class_names, class_field)
    if (labels == IGNORE_INDEX).all():
        raise InputError(f"Labels {path} give no labelled pixel on the grid of {grid_name(grid)}: all are nodata "
                         "or outside the polygons. Check that they cover the same area.")
    return labels
