"""Shared fixtures for the trainer tests: small real GeoTIFF scenes in UTM 32N."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal, osr

from mobanet.card import ModelCard
from mobanet.raster import open_scene
from mobanet.synth import write_scenes
from mobanet.train import SceneFiles

gdal.UseExceptions()
ORIGIN = (496_000.0, 5_421_000.0)
GSD = 0.2


def write_raster(path: Path, bands: np.ndarray, origin: tuple[float, float] = ORIGIN, gsd: float = GSD,
                 nodata: float | None = None, epsg: int = 32632) -> Path:
    """A GeoTIFF of ``bands`` [n, h, w] (uint8 or float32) at ``origin`` in EPSG ``epsg``."""
    bands = np.asarray(bands)
    kind = gdal.GDT_Byte if bands.dtype == np.uint8 else gdal.GDT_Float32
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), bands.shape[2], bands.shape[1], bands.shape[0], kind)
    dataset.SetGeoTransform((origin[0], gsd, 0.0, origin[1], 0.0, -gsd))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    dataset.SetProjection(srs.ExportToWkt())
    for index, values in enumerate(bands, start=1):
        band = dataset.GetRasterBand(index)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(values)
    dataset = None
    return path


def pattern_scene(folder: Path, labels: np.ndarray, name: str = "pattern") -> SceneFiles:
    """Optical, DSM and labels where the optical red band and the DSM equal the label (easy to check alignment)."""
    folder.mkdir(parents=True, exist_ok=True)
    optical = np.stack([labels * 40, np.full_like(labels, 90), np.arange(labels.size, dtype=np.uint8).reshape(
        labels.shape)]).astype(np.uint8)
    dsm = labels.astype(np.float32)[None] * 3.0
    return SceneFiles(write_raster(folder / f"{name}_optical.tif", optical),
                      write_raster(folder / f"{name}_dsm.tif", dsm),
                      write_raster(folder / f"{name}_labels.tif", labels[None].astype(np.uint8), nodata=255))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared CPU, two OpenMP threads spin-waiting on each other run 20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def open_pattern():
    """``open_pattern(files)`` -> Scene with the default model card."""
    return lambda files: open_scene(files.optical, files.dsm, ModelCard())


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> list[SceneFiles]:
    """Three 168 px synthetic scenes (0.2 m) from `mobanet.synth`: two for training, one for validation."""
    folder = tmp_path_factory.mktemp("synthetic")
    entries = write_scenes(folder, 3, 168, seed=11, gsd=0.2)
    return [SceneFiles(e["optical"], e["dsm"], e["labels"]) for e in entries]
