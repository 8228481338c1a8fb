"""Synthetic scenes: deterministic, georeferenced, Vaihingen-like, and ambiguous for each modality alone."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from osgeo import gdal, osr

from mobanet.classes import ISPRS_CLASSES
from mobanet.commands import synth as synth_command
from mobanet.progress import Progress
from mobanet.synth import (
    BUILDING,
    CAR,
    CLUTTER,
    DSM_NODATA,
    IMPERVIOUS,
    LOW_VEGETATION,
    TREE,
    generate_scene,
    write_scene,
    write_scenes,
)

gdal.UseExceptions()


@pytest.fixture(scope="module")
def big_scene():
    return generate_scene(1024, seed=2026)


def test_same_seed_same_scene_other_seed_other_scene():
    a, b, c = generate_scene(256, seed=5), generate_scene(256, seed=5), generate_scene(256, seed=6)
    for name in ("optical", "dsm", "labels", "terrain"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.labels, c.labels)
    assert not np.array_equal(a.optical, c.optical)


def test_arrays_have_the_documented_types():
    scene = generate_scene(200, seed=1, gsd=0.2)
    assert scene.optical.dtype == np.uint8 and scene.optical.shape == (3, 200, 200)
    assert scene.dsm.dtype == np.float32 and scene.dsm.shape == (200, 200)
    assert scene.labels.dtype == np.uint8 and scene.labels.max() <= CLUTTER
    assert np.isfinite(scene.dsm).all()


def test_class_shares_look_like_vaihingen(big_scene):
    shares = np.bincount(big_scene.labels.ravel(), minlength=6) / big_scene.labels.size
    assert 0.18 <= shares[IMPERVIOUS] <= 0.40
    assert 0.15 <= shares[BUILDING] <= 0.38
    assert 0.10 <= shares[LOW_VEGETATION] <= 0.35
    assert 0.12 <= shares[TREE] <= 0.35
    assert 0.004 <= shares[CAR] <= 0.04
    assert 0.004 <= shares[CLUTTER] <= 0.05
    assert big_scene.class_shares()["car"] == pytest.approx(shares[CAR])


def _colour_overlap(scene, label, other) -> float:
    """Share of ``label`` pixels whose colour (16-level bins) is common among ``other`` pixels."""
    binned = (scene.optical // 16).astype(np.int64)
    code = binned[0] * 256 + binned[1] * 16 + binned[2]
    histogram = np.bincount(code[scene.labels == other], minlength=4096)
    common = histogram >= 0.0005 * histogram.sum()
    return float(common[code[scene.labels == label]].mean())


def test_colour_alone_confuses_roofs_with_roads_and_crowns_with_grass(big_scene):
    assert _colour_overlap(big_scene, BUILDING, IMPERVIOUS) > 0.15
    assert _colour_overlap(big_scene, TREE, LOW_VEGETATION) > 0.3
    assert _colour_overlap(big_scene, BUILDING, TREE) < 0.05  # the measure does separate what colour separates


def test_height_alone_confuses_roads_with_grass_but_not_roofs_with_crowns(big_scene):
    above_ground = big_scene.dsm - big_scene.terrain
    road, grass = above_ground[big_scene.labels == IMPERVIOUS], above_ground[big_scene.labels == LOW_VEGETATION]
    assert abs(np.median(road)) < 0.02 and abs(np.median(grass)) < 0.02
    assert abs(road.std() / grass.std() - 1) < 0.1  # same roughness
    assert np.median(above_ground[big_scene.labels == BUILDING]) > 3
    assert np.median(above_ground[big_scene.labels == TREE]) > 3
    dsm = big_scene.dsm
    curvature = np.abs(4 * dsm[1:-1, 1:-1] - dsm[:-2, 1:-1] - dsm[2:, 1:-1] - dsm[1:-1, :-2] - dsm[1:-1, 2:])
    inner = big_scene.labels[1:-1, 1:-1]
    assert np.median(curvature[inner == TREE]) > 2 * np.median(curvature[inner == BUILDING])  # planar roofs


def test_terrain_relief_makes_absolute_height_meaningless(big_scene):
    assert big_scene.terrain.max() - big_scene.terrain.min() > 1.5
    road_heights = big_scene.dsm[big_scene.labels == IMPERVIOUS]
    roof_heights = big_scene.dsm[big_scene.labels == BUILDING]
    assert road_heights.max() > np.percentile(roof_heights, 1) - 6  # ground highs reach towards low roofs


def _epsg(dataset) -> str:
    srs = osr.SpatialReference(wkt=dataset.GetProjection())
    return srs.GetAuthorityCode(None)


def test_written_rasters_are_georeferenced_geotiffs(tmp_path):
    scene = generate_scene(96, seed=3)
    paths = write_scene(scene, tmp_path, "one", origin=(500_000.0, 5_400_000.0))
    optical, dsm, labels = (gdal.Open(str(paths[k])) for k in ("optical", "dsm", "labels"))
    for dataset in (optical, dsm, labels):
        assert _epsg(dataset) == "32632"
        assert dataset.GetGeoTransform() == pytest.approx((500_000.0, 0.1, 0.0, 5_400_000.0, 0.0, -0.1))
        assert (dataset.RasterXSize, dataset.RasterYSize) == (96, 96)
    assert optical.RasterCount == 3 and optical.GetRasterBand(1).DataType == gdal.GDT_Byte
    assert dsm.GetRasterBand(1).DataType == gdal.GDT_Float32
    assert dsm.GetRasterBand(1).GetNoDataValue() == DSM_NODATA
    band = labels.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 255
    assert list(band.GetCategoryNames()) == [c.name for c in ISPRS_CLASSES]
    assert band.GetColorTable().GetColorEntry(1)[:3] == (0, 0, 255)
    np.testing.assert_array_equal(optical.ReadAsArray(), scene.optical)
    np.testing.assert_array_equal(dsm.ReadAsArray(), scene.dsm)
    np.testing.assert_array_equal(band.ReadAsArray(), scene.labels)


def test_write_scenes_lays_scenes_side_by_side_with_a_manifest(tmp_path):
    entries = write_scenes(tmp_path / "out", 2, 64, seed=10, gsd=0.1)
    assert [e["name"] for e in entries] == ["scene_000", "scene_001"]
    assert [e["seed"] for e in entries] == [10, 11]
    second = gdal.Open(str(entries[1]["optical"]))
    first = gdal.Open(str(entries[0]["optical"]))
    assert second.GetGeoTransform()[0] - first.GetGeoTransform()[0] == pytest.approx(64 * 0.1 + 50)
    np.testing.assert_array_equal(gdal.Open(str(entries[1]["labels"])).ReadAsArray(),
                                  generate_scene(64, 11, 0.1).labels)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["epsg"] == 32632 and len(manifest["scenes"]) == 2
    assert manifest["scenes"][0]["labels"] == "scene_000_labels.tif"
    assert sum(manifest["scenes"][0]["class_shares"].values()) == pytest.approx(1.0)


def test_synth_command_writes_named_scenes(tmp_path):
    parser = argparse.ArgumentParser()
    synth_command.register(parser.add_subparsers(), parents=[])
    args = parser.parse_args(["synth", "--output-dir", str(tmp_path / "s"), "--scenes", "1", "--size", "64",
                              "--seed", "7", "--prefix", "sample"])
    result = args.run(args, Progress("quiet"))
    assert (tmp_path / "s" / "sample_optical.tif").is_file()
    assert (tmp_path / "s" / "sample_dsm.tif").is_file()
    assert result["scenes"][0]["labels"] == str(tmp_path / "s" / "sample_labels.tif")
    json.dumps(result)  # the result event must be JSON
