"""Rasters in and out: aligned scene reads, window grid, blending, tiled inference, GeoTIFF/QML/GPKG writers."""

from mobanet.raster.predict import native_bf16, predict_array, resolve_device
from mobanet.raster.scene import Scene, open_scene
from mobanet.raster.segment import segment
from mobanet.raster.windows import WindowGrid, window_grid

__all__ = ["Scene", "WindowGrid", "native_bf16", "open_scene", "predict_array", "resolve_device", "segment",
           "window_grid"]
