"""The synthetic corpora of the ablation, each from its own seeds, and the test DSMs with gaps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal

from mobanet.synth import write_scenes
from mobanet.train import SceneFiles

gdal.UseExceptions()

GSD = 0.1
PRETRAIN_SEED, TRAIN_SEED, VALIDATION_SEED, TEST_SEED = 5000, 300, 600, 700
GAP_SEED = 4242
UNCOVERED_SHARE = 0.12  # right-hand strip of each test scene outside the gappy DSM's coverage
HOLES = 6  # nodata rectangles in the rest of the gappy DSM


@dataclass
class TestScene:
    files: SceneFiles
    gappy_dsm: Path  # the DSM cropped short of the right edge and with nodata holes
    gaps: np.ndarray  # bool [H, W] on the optical grid: pixels without DSM data in ``gappy_dsm``


@dataclass
class Corpora:
    pretrain: list[SceneFiles]
    pretrain_validation: list[SceneFiles]
    train: list[SceneFiles]
    validation: list[SceneFiles]
    test: list[TestScene]


def _files(entries: list[dict]) -> list[SceneFiles]:
    return [SceneFiles(Path(e["optical"]), Path(e["dsm"]), Path(e["labels"])) for e in entries]


def write_gappy_dsm(dsm: Path, target: Path, seed: int) -> np.ndarray:
    """A copy of ``dsm`` that stops short of the right edge and has nodata holes; the gap mask on its grid.

    Real DSMs have both kinds of gap: voids (water, occlusions, matching
    failures) and tiles that end before the orthophoto does.
    """
    source = gdal.Open(str(dsm))
    heights = source.ReadAsArray().astype(np.float32)
    nodata = source.GetRasterBand(1).GetNoDataValue()
    height, width = heights.shape
    rng = np.random.default_rng(seed)
    gaps = np.zeros((height, width), bool)
    covered = width - round(UNCOVERED_SHARE * width)
    gaps[:, covered:] = True
    for _ in range(HOLES):
        h, w = rng.integers(height // 10, height // 4), rng.integers(width // 10, width // 4)
        top, left = rng.integers(0, height - h), rng.integers(0, covered - w)
        gaps[top:top + h, left:left + w] = True
    heights[gaps[:, :covered].nonzero()[0], gaps[:, :covered].nonzero()[1]] = nodata
    out = gdal.GetDriverByName("GTiff").Create(str(target), covered, height, 1, gdal.GDT_Float32,
                                               ["COMPRESS=DEFLATE", "TILED=YES"])
    out.SetGeoTransform(source.GetGeoTransform())
    out.SetProjection(source.GetProjection())
    band = out.GetRasterBand(1)
    band.SetNoDataValue(nodata)
    band.WriteArray(heights[:, :covered])
    out = None
    return gaps


def write_corpora(folder: Path, size: int, pretrain_scenes: int, train_scenes: int, test_scenes: int) -> Corpora:
    """All scenes of one ablation run under ``folder`` (reused when already there)."""
    def scenes(name: str, count: int, seed: int) -> list[SceneFiles]:
        return _files(write_scenes(folder / name, count, size, seed, GSD))

    test = []
    for k, files in enumerate(scenes("test", test_scenes, TEST_SEED)):
        gappy = folder / "test" / f"{Path(files.dsm).stem}_gaps.tif"
        test.append(TestScene(files, gappy, write_gappy_dsm(files.dsm, gappy, GAP_SEED + k)))
    return Corpora(pretrain=scenes("pretrain", pretrain_scenes, PRETRAIN_SEED),
                   pretrain_validation=scenes("pretrain_validation", 1, PRETRAIN_SEED + 1000),
                   train=scenes("train", train_scenes, TRAIN_SEED),
                   validation=scenes("validation", 1, VALIDATION_SEED), test=test)
