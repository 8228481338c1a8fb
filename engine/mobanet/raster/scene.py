"""A scene: an optical raster and a DSM read together, aligned and normalised, window by window.

The optical raster defines the grid. The DSM is brought onto it on the fly
by `aligned_source`: read directly when it shares the CRS and pixel size (at
any whole-pixel offset), otherwise through a GDAL warped VRT, whatever its
CRS, pixel size, extent or orientation: a raster stored south-up (positive y
pixel size) or east-left is read with its rows or columns reversed, so every
pixel meets the one at the same place on the ground. `Scene.read` returns
normalised network input and validity for any window, padding by reflection
where the window leaves the scene so the model never sees black borders. A
paletted optical raster is expanded to RGB on the fly.

A pixel is valid where the optical image has data (and, if given, inside the
polygon mask). The DSM may be absent (no file: the whole DSM input is the
missing modality, `mobanet.model.masking.hide`) or have gaps (nodata, or
outside its coverage): with ``dsm_gaps="nodata"`` gap pixels are invalid, with
``"predict"`` their DSM input is marked missing and the model predicts them
from the optical image, the way MCRM trained it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

from mobanet.card import ModelCard
from mobanet.errors import InputError
from mobanet.model.masking import hide
from mobanet.raster.normalize import DsmNormalizer, OpticalNormalizer, decimated_read
from mobanet.wording import option

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

GDAL_CACHE_BYTES = 256 * 1024 * 1024  # GDAL's default (5 % of RAM) would dominate resident memory
LOW_DSM_COVERAGE = 0.9  # warn when the DSM covers less of the scene than this
DSM_GAP_MODES = ("predict", "nodata")  # what becomes of pixels where a given DSM has no data
DEFAULT_DSM_GAPS = "predict"  # chosen from the ablation (benchmarks/results/ablation.md)
MODALITIES = ("optical", "dsm")


def input_path(path: str | Path) -> str | Path:
    """A local file as a Path; a GDAL virtual path (/vsis3/..., /vsicurl/https://...) as given (Path folds '//')."""
    text = str(path)
    return text if text.startswith("/vsi") else Path(text)


def _open_raster(path: str | Path, what: str) -> gdal.Dataset:
    """Open a raster or raise an `InputError` that names the file and the fix."""
    text = str(path)
    if not text.startswith("/vsi") and not Path(text).exists():
        raise InputError(f"{what} {text} does not exist; check the path.")
    try:
        dataset = gdal.Open(text)
    except RuntimeError as exc:
        if Path(text).is_dir():
            raise InputError(f"{what} {text} is a folder, not a raster; give the raster file itself.") from exc
        raise InputError(f"Cannot open {what} {text} as a raster ({exc}); the file may be corrupt or not a "
                         "raster. Check it with gdalinfo, or export it again as GeoTIFF.") from exc
    if dataset is None or dataset.RasterCount == 0:
        raise InputError(f"{what} {text} holds no raster band; choose a raster file (GeoTIFF, ...).")
    return dataset


def _spatial_ref(dataset: gdal.Dataset, path: str, what: str) -> osr.SpatialReference:
    srs = dataset.GetSpatialRef()
    if srs is None:
        raise InputError(f"{what} {path} has no coordinate reference system; assign one (QGIS: Raster > "
                         f"Projections > Assign Projection, or `gdal_edit.py -a_srs EPSG:XXXX {path}`).")
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    geotransform = dataset.GetGeoTransform()
    if geotransform[2] != 0 or geotransform[4] != 0:
        raise InputError(f"{what} {path} is rotated (its geotransform has rotation terms); warp it to a "
                         f"north-up grid first, e.g. `gdalwarp {path} north_up.tif`.")
    return srs


def _bounds(geotransform: tuple[float, ...], width: int, height: int) -> tuple[float, float, float, float]:
    x0, dx, _, y0, _, dy = geotransform
    xs, ys = (x0, x0 + dx * width), (y0, y0 + dy * height)
    return min(xs), min(ys), max(xs), max(ys)


def _check_has_data(dataset: gdal.Dataset, bands: list[int], path: str, what: str) -> None:
    """All-nodata inputs fail early (a decimated read of the masks, cheap on any size)."""
    for band_index in bands:
        if dataset.GetRasterBand(band_index).GetMaskFlags() & gdal.GMF_ALL_VALID:
            return
        if np.isfinite(decimated_read(dataset, band_index, path)).any():
            return
    raise InputError(f"{what} {path} holds only nodata; check its nodata value (gdalinfo) or choose another file.")


@dataclass
class _Source:
    """Bands of one dataset on a scene's base grid.

    Base pixel (x, y) is dataset pixel (dx + sx * x, dy + sy * y): ``sx``/``sy``
    are -1 where the dataset runs the other way along that axis.
    """

    dataset: gdal.Dataset
    bands: list[int]
    dx: int = 0
    dy: int = 0
    sx: int = 1
    sy: int = 1

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 [n, h, w] values (NaN where unreadable) and bool [h, w] validity; outside the file is invalid."""
        values = np.full((len(self.bands), h, w), np.nan, np.float32)
        valid = np.zeros((h, w), bool)
        sx = self.dx + x if self.sx > 0 else self.dx - (x + w - 1)  # the window's first dataset column and row
        sy = self.dy + y if self.sy > 0 else self.dy - (y + h - 1)
        left, top = max(sx, 0), max(sy, 0)
        right = min(sx + w, self.dataset.RasterXSize)
        bottom = min(sy + h, self.dataset.RasterYSize)
        if right > left and bottom > top:
            size = (left, top, right - left, bottom - top)
            inner = (slice(top - sy, bottom - sy), slice(left - sx, right - sx))
            data = self.dataset.ReadAsArray(*size, band_list=self.bands).reshape(len(self.bands), size[3], size[2])
            values[(slice(None), *inner)] = data
            band_valid = np.isfinite(values[(slice(None), *inner)])
            for i, band_index in enumerate(self.bands):  # GDAL masks cover nodata values, alpha and mask bands
                band = self.dataset.GetRasterBand(band_index)
                if not band.GetMaskFlags() & gdal.GMF_ALL_VALID:
                    band_valid[i] &= band.GetMaskBand().ReadAsArray(*size) > 0
            # A pixel counts as nodata only when every band is (gdalwarp's convention): a dark pixel with one
            # band at the nodata value is still imagery.
            valid[inner] = band_valid.any(axis=0)
        flip = (slice(None, None, self.sy), slice(None, None, self.sx))
        return np.ascontiguousarray(values[(slice(None), *flip)]), np.ascontiguousarray(valid[flip])


class Scene:
    """Aligned, normalised access to one optical raster + DSM (see module docstring).

    ``width``/``height``/``geotransform``/``projection`` describe the scene's own
    grid: the optical grid, or the part of it the extent selects, or (when
    opened with ``gsd``) that area resampled to the model's pixel size.
    It runs as the optical raster is stored (south-up too); `read` returns
    windows in that order. ``dsm_coverage`` is the share of that area the
    DSM's footprint covers; ``notes`` say what was done to the inputs on the
    way (for the user). ``dsm_path`` is None when the DSM is absent.
    """

    def __init__(self, optical: _Source, dsm: _Source | None, optical_norm: OpticalNormalizer,
                 dsm_norm: DsmNormalizer | None, base_geotransform: tuple[float, ...], projection: str,
                 window: tuple[int, int, int, int], optical_path: str | Path, dsm_path: str | Path | None,
                 mask_layer: ogr.Layer | None = None, mask_dataset: ogr.DataSource | None = None,
                 dsm_coverage: float = 1.0, notes: list[str] | None = None, dsm_gaps: str = "nodata"):
        self._optical, self._dsm = optical, dsm
        self.optical_normalizer, self.dsm_normalizer = optical_norm, dsm_norm
        self._base_geotransform = tuple(base_geotransform)
        self.projection = projection
        self.x0, self.y0, self.width, self.height = window
        self.optical_path, self.dsm_path = optical_path, dsm_path
        self._mask_layer, self._mask_dataset = mask_layer, mask_dataset
        self.dsm_coverage = dsm_coverage
        self.notes = list(notes or [])
        self.dsm_gaps = dsm_gaps
        self.hidden: frozenset[str] = frozenset() if dsm is not None else frozenset({"dsm"})
        gt = self._base_geotransform
        self.geotransform = (gt[0] + self.x0 * gt[1], gt[1], 0.0, gt[3] + self.y0 * gt[5], 0.0, gt[5])

    @property
    def dsm_absent(self) -> bool:
        """True when the model gets no DSM at all (none given, or hidden by `hiding`)."""
        return "dsm" in self.hidden

    @property
    def pixel_size(self) -> tuple[float, float]:
        return abs(self.geotransform[1]), abs(self.geotransform[5])

    @property
    def upright_flips(self) -> tuple[bool, bool]:
        """(rows, columns): whether the grid runs south-up / east-left; windows are turned upright for the model."""
        return self.geotransform[5] > 0, self.geotransform[1] < 0

    @property
    def anchor(self) -> tuple[int, int]:
        """The scene origin in whole pixels from the CRS origin: window grids are laid out from here."""
        gt = self.geotransform
        return round(gt[0] / gt[1]), round(gt[3] / gt[5])

    def crop(self, x: int, y: int, w: int, h: int) -> Scene:
        """A view of the pixel block (x, y, w, h) of this scene (same files, same statistics)."""
        left, top = max(x, 0), max(y, 0)
        right, bottom = min(x + w, self.width), min(y + h, self.height)
        if right <= left or bottom <= top:
            raise ValueError(f"crop {(x, y, w, h)} lies outside the {self.width} x {self.height} scene")
        view = copy.copy(self)
        view.x0, view.y0, view.width, view.height = self.x0 + left, self.y0 + top, right - left, bottom - top
        gt = self._base_geotransform
        view.geotransform = (gt[0] + view.x0 * gt[1], gt[1], 0.0, gt[3] + view.y0 * gt[5], 0.0, gt[5])
        return view

    def hiding(self, *modalities: str) -> Scene:
        """A view of this scene whose reads mark these modalities missing (validation and ablation scores)."""
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; use {MODALITIES}")
        view = copy.copy(self)
        view.hidden = self.hidden | frozenset(modalities)
        return view

    def read(self, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised optical float32 [3, h, w], DSM float32 [1, h, w] and validity bool [h, w] of a window.

        The window may reach past the scene: the part inside is mirrored outwards
        (valid False there). Invalid pixels, and missing DSM pixels, hold the
        missing-modality value (`hide`).
        """
        optical = np.zeros((3, h, w), np.float32)
        dsm = np.zeros((1, h, w), np.float32)
        valid = np.zeros((h, w), bool)
        left, top = max(x, 0), max(y, 0)
        right, bottom = min(x + w, self.width), min(y + h, self.height)
        if right <= left or bottom <= top:
            return hide(optical), hide(dsm), valid
        bx, by, bw, bh = self.x0 + left, self.y0 + top, right - left, bottom - top
        try:
            raw_optical, inner_valid = self._optical.read(bx, by, bw, bh)
            if self._dsm is not None:
                raw_dsm, dsm_valid = self._dsm.read(bx, by, bw, bh)
        except RuntimeError as exc:
            files = " / ".join(str(p) for p in (self.optical_path, self.dsm_path) if p is not None)
            raise InputError(f"Reading {files} failed ({exc}); a file may be corrupt or truncated. Check it with "
                             "gdalinfo -checksum.") from exc
        if self._mask_layer is not None:
            inner_valid &= self._mask_inside(bx, by, bw, bh)
        inner_optical = self.optical_normalizer(raw_optical)
        if self._dsm is None:
            inner_dsm = hide(np.empty((1, bh, bw), np.float32))
        else:
            inner_dsm = self.dsm_normalizer(raw_dsm)
            if self.dsm_gaps == "nodata":
                inner_valid &= dsm_valid
            hide(inner_dsm, ~dsm_valid)  # gaps the model predicts from the optical image alone
        hide(inner_optical, ~inner_valid)
        hide(inner_dsm, ~inner_valid)
        if "optical" in self.hidden:
            hide(inner_optical)
        if "dsm" in self.hidden:
            hide(inner_dsm)
        pad = ((top - y, y + h - bottom), (left - x, x + w - right))
        optical[:] = np.pad(inner_optical, ((0, 0), *pad), mode="symmetric")
        dsm[:] = np.pad(inner_dsm, ((0, 0), *pad), mode="symmetric")
        valid[top - y: bottom - y, left - x: right - x] = inner_valid
        return optical, dsm, valid

    def dsm_gap_share(self, rows: int = 512) -> float:
        """Share of the scene's pixels where the given DSM has no data (outside its footprint, nodata or NaN).

        0.0 without a DSM. One pass over the DSM in blocks of ``rows`` (a DSM is one band: cheap beside the
        model), so that a run says it predicted gaps only when there were some.
        """
        if self._dsm is None:
            return 0.0
        missing = 0
        for top in range(0, self.height, rows):
            height = min(rows, self.height - top)
            _, valid = self._dsm.read(self.x0, self.y0 + top, self.width, height)
            missing += valid.size - int(np.count_nonzero(valid))
        return missing / (self.width * self.height)

    def close(self) -> None:
        """Release the files (views made by `crop` share them)."""
        self._optical = self._dsm = None  # type: ignore[assignment]
        self._mask_layer = self._mask_dataset = None

    # -- internals --------------------------------------------------------------
    def _mask_inside(self, bx: int, by: int, bw: int, bh: int) -> np.ndarray:
        """Rasterise the polygon mask on a base-grid block (GDAL reprojects the polygons if needed)."""
        gt = self._base_geotransform
        block_gt = (gt[0] + bx * gt[1], gt[1], 0.0, gt[3] + by * gt[5], 0.0, gt[5])
        target = gdal.GetDriverByName("MEM").Create("", bw, bh, 1, gdal.GDT_Byte)
        target.SetGeoTransform(block_gt)
        target.SetProjection(self.projection)
        gdal.RasterizeLayer(target, [1], self._mask_layer, burn_values=[1])
        return target.GetRasterBand(1).ReadAsArray() > 0


def _pixel_window(extent: tuple[float, float, float, float], geotransform: tuple[float, ...], width: int,
                  height: int, path: str) -> tuple[int, int, int, int]:
    """The optical pixels that a map extent (xmin, ymin, xmax, ymax, optical CRS) touches."""
    xmin, ymin, xmax, ymax = extent
    if not (xmin < xmax and ymin < ymax):
        raise InputError(f"The extent {extent} is empty; give it as xmin,ymin,xmax,ymax with xmin < xmax and "
                         "ymin < ymax, in the CRS of the optical raster.")
    gt = geotransform
    cols = sorted(((xmin - gt[0]) / gt[1], (xmax - gt[0]) / gt[1]))
    rows = sorted(((ymin - gt[3]) / gt[5], (ymax - gt[3]) / gt[5]))
    left, right = max(math.floor(cols[0] + 1e-9), 0), min(math.ceil(cols[1] - 1e-9), width)
    top, bottom = max(math.floor(rows[0] + 1e-9), 0), min(math.ceil(rows[1] - 1e-9), height)
    if right <= left or bottom <= top:
        raise InputError(f"The extent {extent} does not overlap the optical raster {path} "
                         f"(bounds {_bounds(gt, width, height)}); give an extent in its CRS that overlaps it.")
    return left, top, right - left, bottom - top


def _open_mask(mask: str | Path) -> tuple[ogr.DataSource, ogr.Layer]:
    try:
        source = ogr.Open(str(mask))
    except RuntimeError as exc:
        raise InputError(f"Cannot open the mask {mask} as vector data ({exc}); give a polygon file "
                         "(GeoPackage, shapefile, ...).") from exc
    if source is None or source.GetLayerCount() == 0:
        raise InputError(f"The mask {mask} holds no vector layer; give a polygon file (GeoPackage, shapefile).")
    layer = source.GetLayer(0)
    if layer.GetSpatialRef() is None:
        raise InputError(f"The mask {mask} has no coordinate reference system; assign one (QGIS: Vector > "
                         "Data Management Tools > Assign Projection).")
    return source, layer


def _whole(value: float) -> int | None:
    return round(value) if abs(value - round(value)) < 1e-6 else None


def aligned_source(dataset: gdal.Dataset, bands: list[int], geotransform: tuple[float, ...], width: int,
                   height: int, srs: osr.SpatialReference, **warp_options: object) -> _Source:
    """``bands`` of ``dataset`` read on the grid (geotransform, width, height, srs), whatever its orientation.

    Directly when its pixels line up with the grid (same CRS and pixel size,
    whole-pixel offset, either orientation), else through a warped VRT
    (``warp_options`` go to `gdal.Warp`), which GDAL always builds north-up
    and east-right: rows or columns are then reversed for a grid that is not.
    """
    gt, dgt = geotransform, dataset.GetGeoTransform()
    own_srs = dataset.GetSpatialRef()
    if own_srs is not None:
        own_srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    sx = 1 if (gt[1] > 0) == (dgt[1] > 0) else -1
    sy = 1 if (gt[5] > 0) == (dgt[5] > 0) else -1
    same_pixels = all(math.isclose(abs(gt[i]), abs(dgt[i]), rel_tol=1e-9) for i in (1, 5))
    if own_srs is not None and own_srs.IsSame(srs) and same_pixels and dgt[2] == dgt[4] == 0:
        # centre of base pixel x sits at dataset column (gt0 - dgt0) / dgt1 + sx * (x + 0.5) - 0.5
        dx = _whole((gt[0] - dgt[0]) / dgt[1] + (0 if sx > 0 else -1))
        dy = _whole((gt[3] - dgt[3]) / dgt[5] + (0 if sy > 0 else -1))
        if dx is not None and dy is not None:
            return _Source(dataset, bands, dx, dy, sx, sy)
    warped = gdal.Warp("", dataset, format="VRT", outputBounds=_bounds(gt, width, height), width=width,
                       height=height, dstSRS=srs.ExportToWkt(), multithread=False, **warp_options)
    sx, sy = (1 if gt[1] > 0 else -1), (1 if gt[5] < 0 else -1)
    return _Source(warped, bands, 0 if sx > 0 else width - 1, 0 if sy > 0 else height - 1, sx, sy)


def _dsm_source(dsm: gdal.Dataset, base: gdal.Dataset, base_srs: osr.SpatialReference) -> _Source:
    """The DSM on the base grid: heights as float32, NaN where it has no data."""
    return aligned_source(dsm, [1], base.GetGeoTransform(), base.RasterXSize, base.RasterYSize, base_srs,
                          resampleAlg="bilinear", outputType=gdal.GDT_Float32, dstNodata=float("nan"))


def _expanded_palette(dataset: gdal.Dataset) -> gdal.Dataset:
    """A one-band paletted raster as an RGBA VRT; palette entries that are nodata get alpha 0 (invalid)."""
    indexed = gdal.Translate("", dataset, format="VRT")
    band = indexed.GetRasterBand(1)
    table = band.GetColorTable().Clone()
    nodata = band.GetNoDataValue()
    if nodata is not None and 0 <= nodata < table.GetCount() and float(nodata).is_integer():
        red, green, blue, _ = table.GetColorEntry(int(nodata))
        table.SetColorEntry(int(nodata), (red, green, blue, 0))
        band.SetColorTable(table)
    return gdal.Translate("", indexed, format="VRT", rgbExpand="rgba")


def _coverage(inner: tuple[float, float, float, float], outer: tuple[float, float, float, float]) -> float:
    """Share of the area of ``outer`` that ``inner`` covers (both xmin, ymin, xmax, ymax)."""
    width = min(inner[2], outer[2]) - max(inner[0], outer[0])
    height = min(inner[3], outer[3]) - max(inner[1], outer[1])
    area = (outer[2] - outer[0]) * (outer[3] - outer[1])
    return max(width, 0.0) * max(height, 0.0) / area if area > 0 else 0.0


def coverage_warning(scene: Scene, extent: bool = False) -> str | None:
    """What to tell the user when the DSM covers little of the scene (the rest gets no class), else None."""
    if scene.dsm_path is None or scene.dsm_coverage >= LOW_DSM_COVERAGE:
        return None
    rest = ("is predicted from the optical image alone (less accurate)" if scene.dsm_gaps == "predict"
            else "gets no class (nodata)")
    return (f"The DSM {scene.dsm_path} covers only {100 * scene.dsm_coverage:.1f} % of the optical raster "
            f"{scene.optical_path}{' inside the extent' if extent else ''}; the rest {rest}. Give a "
            "DSM of the whole area.")


def _dsm_overlap(dsm_ds: gdal.Dataset, dsm_path: str | Path, dsm_srs: osr.SpatialReference,
                 optical_path: str | Path, optical_srs: osr.SpatialReference,
                 optical_bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The DSM's bounds in the optical CRS; no overlap at all is an error (before any pixel is read)."""
    to_optical = osr.CoordinateTransformation(dsm_srs, optical_srs)
    dsm_bounds = to_optical.TransformBounds(*_bounds(dsm_ds.GetGeoTransform(), dsm_ds.RasterXSize,
                                                     dsm_ds.RasterYSize), 21)
    if (min(dsm_bounds[2], optical_bounds[2]) <= max(dsm_bounds[0], optical_bounds[0])
            or min(dsm_bounds[3], optical_bounds[3]) <= max(dsm_bounds[1], optical_bounds[1])):
        raise InputError(f"The DSM {dsm_path} and the optical raster {optical_path} do not overlap "
                         f"(optical {tuple(round(v, 2) for v in optical_bounds)}, DSM "
                         f"{tuple(round(v, 2) for v in dsm_bounds)} in the optical CRS); give rasters of the "
                         "same area, and check that both carry the right CRS.")
    return dsm_bounds


def open_scene(optical: str | Path, dsm: str | Path | None, card: ModelCard, bands: list[int] | None = None,
               extent: tuple[float, float, float, float] | None = None, mask: str | Path | None = None,
               gsd: float | None = None, dsm_gaps: str = "nodata") -> Scene:
    """Open, check and align an optical raster and a DSM for a model (see module docstring).

    dsm: None when there is no DSM: the model gets the missing-modality input everywhere.
    bands: 1-based optical band numbers in R,G,B order (default: the card's).
    extent: xmin, ymin, xmax, ymax in the optical CRS; the scene is the optical pixels it touches.
    mask: polygons (any OGR format, any CRS); pixels outside them are nodata.
    gsd: resample the optical grid to this pixel size (metres) before predicting.
    dsm_gaps: "nodata" (pixels without DSM data are invalid) or "predict" (from the optical image alone).
    """
    if dsm_gaps not in DSM_GAP_MODES:
        raise InputError(f"{option('--dsm-gaps')} {dsm_gaps!r} is not one of {', '.join(DSM_GAP_MODES)}.")
    if gdal.GetCacheMax() > GDAL_CACHE_BYTES:
        gdal.SetCacheMax(GDAL_CACHE_BYTES)
    optical_path = input_path(optical)
    dsm_path = input_path(dsm) if dsm is not None else None
    optical_ds = _open_raster(optical_path, "Optical raster")
    dsm_ds = _open_raster(dsm_path, "DSM") if dsm_path is not None else None
    optical_srs = _spatial_ref(optical_ds, str(optical_path), "Optical raster")
    dsm_srs = _spatial_ref(dsm_ds, str(dsm_path), "DSM") if dsm_ds is not None else None
    notes = []
    if optical_ds.RasterCount == 1 and optical_ds.GetRasterBand(1).GetColorTable() is not None:
        optical_ds = _expanded_palette(optical_ds)
        notes.append(f"Optical raster {optical_path} is paletted: its colour table is expanded to R,G,B bands.")

    if dsm_ds is not None and dsm_ds.RasterCount != 1:  # first: with the two swapped, this message helps
        raise InputError(f"DSM {dsm_path} has {dsm_ds.RasterCount} bands; a DSM has one band of heights in "
                         f"metres. Did you swap {option('--optical')} and {option('--dsm')}?")
    wanted = len(card.optical_bands)
    bands = list(bands) if bands else list(card.optical_bands)
    if len(bands) != wanted:
        raise InputError(f"The model '{card.name}' takes {wanted} optical bands (R,G,B) but {len(bands)} were "
                         f"chosen for {optical_path}; give {option('--bands')} {wanted} band numbers, e.g. 1,2,3.")
    count = optical_ds.RasterCount
    if count < wanted and bands == list(card.optical_bands):
        raise InputError(f"Optical raster {optical_path} has {count} band(s) but the model needs {wanted} "
                         f"(R,G,B); give a {wanted}-band colour image, or pick its bands with {option('--bands')}.")
    for band_index in bands:
        if not 1 <= band_index <= count:
            raise InputError(f"Optical raster {optical_path} has {count} band(s): band {band_index} does not "
                             f"exist; give {option('--bands')} numbers from 1 to {count}.")

    width, height = optical_ds.RasterXSize, optical_ds.RasterYSize
    geotransform = optical_ds.GetGeoTransform()
    window = (0, 0, width, height)
    if extent is not None:
        window = _pixel_window(extent, geotransform, width, height, str(optical_path))
    optical_bounds = _bounds((geotransform[0] + window[0] * geotransform[1], geotransform[1], 0,
                              geotransform[3] + window[1] * geotransform[5], 0, geotransform[5]),
                             window[2], window[3])
    dsm_bounds = dsm_norm = None
    if dsm_ds is not None:
        dsm_bounds = _dsm_overlap(dsm_ds, dsm_path, dsm_srs, optical_path, optical_srs, optical_bounds)

    _check_has_data(optical_ds, bands, str(optical_path), "Optical raster")
    optical_norm = OpticalNormalizer.fit(optical_ds, bands, card.optical_normalization, str(optical_path))
    if dsm_ds is not None:
        _check_has_data(dsm_ds, [1], str(dsm_path), "DSM")
        dsm_norm = DsmNormalizer.fit(dsm_ds, card.dsm_normalization, str(dsm_path))

    base = optical_ds
    if gsd is not None and not (math.isfinite(gsd) and gsd > 0):
        raise InputError(f"The pixel size to predict at must be a positive number of metres, not {gsd}.")
    if gsd is not None and not math.isclose(gsd, abs(geotransform[1]), rel_tol=0.01):
        base = gdal.Warp("", optical_ds, format="VRT", outputBounds=optical_bounds, xRes=gsd, yRes=gsd,
                         resampleAlg="average" if gsd > abs(geotransform[1]) else "bilinear", multithread=False)
        window = (0, 0, base.RasterXSize, base.RasterYSize)
    optical_source = _Source(base, bands)
    dsm_source = _dsm_source(dsm_ds, base, optical_srs) if dsm_ds is not None else None
    mask_dataset = mask_layer = None
    if mask is not None:
        mask_dataset, mask_layer = _open_mask(mask)
    coverage = _coverage(dsm_bounds, optical_bounds) if dsm_bounds is not None else 0.0
    return Scene(optical_source, dsm_source, optical_norm, dsm_norm, base.GetGeoTransform(),
                 optical_srs.ExportToWkt(), window, optical_path, dsm_path, mask_layer, mask_dataset,
                 coverage, notes, dsm_gaps)
