"""Small real GeoTIFFs (EPSG:32632 unless told) and a tiny random MoBaNet saved to a real model file."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal, osr

from mobanet.card import ModelCard
from mobanet.model import MoBaNetConfig, build_model
from mobanet.modelfile import save_model

ORIGIN = (500_000.0, 5_000_000.0)  # UTM 32N, on whole multiples of the 0.5 m pixel


def write_raster(path: Path, array: np.ndarray, geotransform: tuple[float, ...] | None = None,
                 epsg: int | None = 32632, nodata: float | None = None) -> Path:
    """Write a [bands, h, w] (or [h, w]) array as a GeoTIFF; default grid 0.5 m at ORIGIN."""
    array = array[None] if array.ndim == 2 else array
    types = {np.dtype(np.uint8): gdal.GDT_Byte, np.dtype(np.uint16): gdal.GDT_UInt16,
             np.dtype(np.float32): gdal.GDT_Float32}
    bands, height, width = array.shape
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, bands, types[array.dtype])
    dataset.SetGeoTransform(geotransform or (ORIGIN[0], 0.5, 0.0, ORIGIN[1], 0.0, -0.5))
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        dataset.SetProjection(srs.ExportToWkt())
    for i in range(bands):
        band = dataset.GetRasterBand(i + 1)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(array[i])
    dataset = None
    return path


def synthetic_pair(size: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A scene with structure: blocky 'buildings' (high DSM, one colour) on smooth ground."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    dsm = (100.0 + 2.0 * np.sin(xx / 17.0) + 1.5 * np.cos(yy / 23.0)).astype(np.float32)
    optical = np.stack([80 + 40 * np.sin(xx / 11.0), 120 + 30 * np.cos(yy / 13.0), 90 + 0 * xx]).astype(np.float32)
    for _ in range(size // 20):
        x, y = rng.integers(0, size - 30, 2)
        w, h = rng.integers(12, 30, 2)
        dsm[y:y + h, x:x + w] += 8.0
        optical[:, y:y + h, x:x + w] = rng.integers(0, 255, (3, 1, 1))
    optical += rng.normal(0, 4, optical.shape)
    return np.clip(optical, 0, 255).astype(np.uint8), dsm


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MoBaNet (full file: its backbone is random)."""
    torch.manual_seed(0)
    model = build_model(MoBaNetConfig())
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, model, ModelCard(window=56), full=True)
    return path


@pytest.fixture()
def scene_files(tmp_path: Path) -> tuple[Path, Path]:
    optical, dsm = synthetic_pair()
    return write_raster(tmp_path / "optical.tif", optical), write_raster(tmp_path / "dsm.tif", dsm)


@pytest.fixture(autouse=True)
def _collect_gdal_garbage():
    """Free GDAL objects caught in exception reference cycles while the bindings are alive.

    Left to interpreter shutdown, SWIG may free a dataset before its bands and crash the test process.
    """
    yield
    gc.collect()
