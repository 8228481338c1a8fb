"""Optical and DSM values -> network input, exactly as the model card says.

Statistics (percentile stretch of 16-bit/float imagery, DSM min-max) are
computed ONCE per raster from a decimated read of the whole file, never per
window: the value a pixel gets must not depend on where the windows fall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from mobanet.card import DsmNormalization, OpticalNormalization
from mobanet.errors import InputError
from mobanet.wording import option

STATS_MAX_SIDE = 1024  # longest side of the decimated read used for raster statistics


def decimated_read(dataset: gdal.Dataset, band_index: int, path: str) -> np.ndarray:
    """Values of one band on a coarse grid (at most STATS_MAX_SIDE a side), invalid pixels as NaN."""
    width, height = dataset.RasterXSize, dataset.RasterYSize
    factor = max(1.0, max(width, height) / STATS_MAX_SIDE)
    buf_w, buf_h = max(1, round(width / factor)), max(1, round(height / factor))
    band = dataset.GetRasterBand(band_index)
    try:
        values = band.ReadAsArray(0, 0, width, height, buf_xsize=buf_w, buf_ysize=buf_h).astype(np.float64)
        mask = band.GetMaskBand().ReadAsArray(0, 0, width, height, buf_xsize=buf_w, buf_ysize=buf_h)
    except RuntimeError as exc:
        raise InputError(f"Cannot read {path} (band {band_index}): {exc}. The file may be corrupt; "
                         "check it with gdalinfo -checksum or export it again.") from exc
    values[(mask == 0) | ~np.isfinite(values)] = np.nan
    return values


@dataclass
class OpticalNormalizer:
    """Per band: (clip((x - low) / (high - low), 0, 1) - mean) / std."""

    low: np.ndarray  # [3] value mapped to 0
    high: np.ndarray  # [3] value mapped to 1
    mean: np.ndarray
    std: np.ndarray
    scale: str  # "uint8" or "percentile", as resolved for this raster

    @classmethod
    def fit(cls, dataset: gdal.Dataset, bands: list[int], settings: OpticalNormalization,
            path: str) -> OpticalNormalizer:
        scale = settings.scale
        if scale == "auto":
            byte = all(dataset.GetRasterBand(b).DataType == gdal.GDT_Byte for b in bands)
            scale = "uint8" if byte else "percentile"
        if scale == "uint8":
            low, high = np.zeros(3), np.full(3, 255.0)
        elif scale == "percentile":
            low, high = np.zeros(3), np.ones(3)
            for i, b in enumerate(bands):
                values = decimated_read(dataset, b, path)
                values = values[np.isfinite(values)]
                if values.size == 0:
                    raise InputError(f"Optical raster {path} band {b} holds only nodata; "
                                     f"choose another band with {option('--bands')} or another file.")
                low[i], high[i] = np.percentile(values, [settings.low, settings.high])
                if high[i] <= low[i]:
                    high[i] = low[i] + 1.0
        else:
            raise InputError(f"Unknown optical scaling {settings.scale!r} in the model card; "
                             "use uint8, percentile or auto.")
        return cls(low, high, np.asarray(settings.mean, float), np.asarray(settings.std, float), scale)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """[3, h, w] raw values -> float32 network input."""
        low = self.low[:, None, None]
        high = self.high[:, None, None]
        unit = (values.astype(np.float32) - low.astype(np.float32)) / (high - low).astype(np.float32)
        np.clip(unit, 0.0, 1.0, out=unit)
        return (unit - self.mean[:, None, None].astype(np.float32)) / self.std[:, None, None].astype(np.float32)


@dataclass
class DsmNormalizer:
    """(clip((d - offset) / scale, 0, 1 for raster_minmax) - mean) / std, one channel."""

    offset: float
    scale: float
    mean: float
    std: float
    clip: bool

    @classmethod
    def fit(cls, dataset: gdal.Dataset, settings: DsmNormalization, path: str) -> DsmNormalizer:
        if settings.mode == "fixed":
            if settings.scale == 0:
                raise InputError("The model card has a DSM scale of 0; fix the model card.")
            return cls(settings.offset, settings.scale, settings.mean, settings.std, clip=False)
        if settings.mode != "raster_minmax":
            raise InputError(f"Unknown DSM normalisation {settings.mode!r} in the model card; "
                             "use raster_minmax or fixed.")
        values = decimated_read(dataset, 1, path)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise InputError(f"DSM {path} holds only nodata; choose a DSM with valid heights.")
        low, high = np.percentile(values, [settings.low, settings.high])
        return cls(float(low), float(max(high - low, 1e-3)), settings.mean, settings.std, clip=True)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """[1, h, w] metres -> float32 network input."""
        unit = (values.astype(np.float32) - np.float32(self.offset)) / np.float32(self.scale)
        if self.clip:
            np.clip(unit, 0.0, 1.0, out=unit)
        return (unit - np.float32(self.mean)) / np.float32(self.std)
