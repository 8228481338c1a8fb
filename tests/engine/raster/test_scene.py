"""Scene: alignment of a DSM in another CRS and pixel size, nodata, padding, normalisation, extent, mask."""

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from mobanet.card import DsmNormalization, ModelCard, OpticalNormalization
from mobanet.errors import MobanetError
from mobanet.model.masking import ABSENT
from mobanet.raster.scene import open_scene

from .conftest import ORIGIN, synthetic_pair, write_raster

RAW_DSM = ModelCard(dsm_normalization=DsmNormalization(mode="fixed", offset=0.0, scale=1.0, mean=0.0, std=1.0))


def _plane(e, n):
    return 100.0 + 0.1 * (e - ORIGIN[0]) + 0.05 * (n - ORIGIN[1])


def test_dsm_in_another_crs_and_pixel_size_lands_on_the_optical_grid(tmp_path):
    optical, _ = synthetic_pair(120)
    optical_path = write_raster(tmp_path / "o.tif", optical)
    # DSM: ETRS89 / UTM 32N, 1 m pixels, starting 10 m east of the optical, covering its lower-right part.
    x0, y0 = ORIGIN[0] + 10.0, ORIGIN[1] - 5.0
    cols, rows = np.meshgrid(np.arange(80) + 0.5, np.arange(80) + 0.5)
    dsm = _plane(x0 + cols, y0 - rows).astype(np.float32)
    dsm_path = write_raster(tmp_path / "d.tif", dsm, (x0, 1.0, 0.0, y0, 0.0, -1.0), epsg=25832)

    scene = open_scene(optical_path, dsm_path, RAW_DSM)
    assert (scene.width, scene.height) == (120, 120)
    assert scene.geotransform == (ORIGIN[0], 0.5, 0.0, ORIGIN[1], 0.0, -0.5)
    _, heights, valid = scene.read(0, 0, 120, 120)
    e, n = np.meshgrid(ORIGIN[0] + (np.arange(120) + 0.5) * 0.5, ORIGIN[1] - (np.arange(120) + 0.5) * 0.5)
    inside = (e > x0 + 1) & (n < y0 - 1)  # a pixel in from the DSM edge
    outside = (e < x0) | (n > y0)
    assert valid[inside].all() and not valid[outside].any()
    assert np.abs(heights[0][inside] - _plane(e, n)[inside]).max() < 0.05  # bilinear on a plane: exact
    assert (heights[0][~valid] == 0).all()


def test_nodata_in_either_input_is_invalid(tmp_path):
    optical, dsm = synthetic_pair(100)
    optical[:, 10:20, 10:30] = 0
    dsm[50:60, 70:90] = -9999
    scene = open_scene(write_raster(tmp_path / "o.tif", optical, nodata=0),
                       write_raster(tmp_path / "d.tif", dsm, nodata=-9999), ModelCard())
    _, _, valid = scene.read(0, 0, 100, 100)
    expected = np.ones((100, 100), bool)
    expected[10:20, 10:30] = False
    expected[50:60, 70:90] = False
    assert (valid == expected).all()


def test_windows_past_the_edge_are_mirrored_and_invalid(tmp_path):
    optical, dsm = synthetic_pair(60)
    scene = open_scene(write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm), ModelCard())
    inner_o, inner_d, inner_v = scene.read(0, 0, 60, 60)
    o, d, v = scene.read(-10, -5, 40, 30)
    assert v[5:, 10:].all() and not v[:5].any() and not v[:, :10].any()
    assert np.array_equal(o[:, 5:, 10:], inner_o[:, :25, :30])
    assert np.array_equal(o[:, 4, 10:], inner_o[:, 0, :30])  # mirrored, no black border
    assert np.array_equal(d[:, 5:, 9], inner_d[:, :25, 0])
    o, d, v = scene.read(100, 100, 20, 20)  # entirely outside
    assert not v.any() and not o.any() and not d.any()


def test_crop_is_a_view_with_the_same_statistics(tmp_path):
    optical, dsm = synthetic_pair(80)
    scene = open_scene(write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm), ModelCard())
    view = scene.crop(20, 30, 40, 40)
    assert (view.width, view.height) == (40, 40)
    assert view.geotransform[0] == ORIGIN[0] + 10.0 and view.geotransform[3] == ORIGIN[1] - 15.0
    full = scene.read(20, 30, 40, 40)
    part = view.read(0, 0, 40, 40)
    for a, b in zip(full, part, strict=True):
        assert np.array_equal(a, b)
    _, _, valid = view.read(-5, 0, 10, 10)  # outside the view: invalid even though the file has data there
    assert not valid[:, :5].any()


def test_16bit_and_dsm_statistics_are_per_raster_not_per_window(tmp_path):
    rng = np.random.default_rng(3)
    optical = rng.integers(0, 4000, (3, 90, 90)).astype(np.uint16)
    dsm = rng.normal(200, 20, (90, 90)).astype(np.float32)
    card = ModelCard(optical_normalization=OpticalNormalization(scale="auto", low=2, high=98))
    scene = open_scene(write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm), card)
    assert scene.optical_normalizer.scale == "percentile"
    low, high = np.percentile(optical[0].astype(float), [2, 98])
    assert abs(scene.optical_normalizer.low[0] - low) < 1e-6 and abs(scene.optical_normalizer.high[0] - high) < 1e-6
    a = scene.read(10, 10, 40, 40)
    b = scene.read(30, 20, 40, 40)  # overlapping windows: the shared pixels get identical values
    assert np.array_equal(a[0][:, 10:, 20:], b[0][:, :30, :20])
    assert np.array_equal(a[1][:, 10:, 20:], b[1][:, :30, :20])
    unit = np.clip((optical[1, 10, 10] - scene.optical_normalizer.low[1])
                   / (scene.optical_normalizer.high[1] - scene.optical_normalizer.low[1]), 0, 1)
    assert np.isclose(a[0][1, 0, 0], (unit - 0.456) / 0.224, atol=1e-5)


def test_extent_and_polygon_mask(tmp_path):
    optical, dsm = synthetic_pair(100)
    o, d = write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm)
    extent = (ORIGIN[0] + 5.2, ORIGIN[1] - 40.0, ORIGIN[0] + 30.0, ORIGIN[1] - 10.1)
    scene = open_scene(o, d, ModelCard(), extent=extent)
    assert (scene.x0, scene.y0, scene.width, scene.height) == (10, 20, 50, 60)
    assert scene.geotransform[0] == ORIGIN[0] + 5.0 and scene.geotransform[3] == ORIGIN[1] - 10.0

    # Mask polygon in WGS 84: the engine reprojects it onto the optical grid.
    utm, wgs = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(32632)
    wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    utm.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for e, n in [(10, -10), (30, -10), (30, -30), (10, -30), (10, -10)]:
        ring.AddPoint_2D(ORIGIN[0] + e, ORIGIN[1] + n)
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(ring)
    polygon.AssignSpatialReference(utm)
    polygon.TransformTo(wgs)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp_path / "mask.gpkg"))
    layer = source.CreateLayer("mask", srs=wgs, geom_type=ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(polygon)
    layer.CreateFeature(feature)
    source = None
    scene = open_scene(o, d, ModelCard(), mask=tmp_path / "mask.gpkg")
    _, _, valid = scene.read(0, 0, 100, 100)
    assert valid[21:59, 21:59].all() and valid.sum() == pytest.approx(40 * 40, abs=80)
    assert not valid[:19].any() and not valid[:, 61:].any()


def _oriented(path, values: np.ndarray, x0: float, y_north: float, size: float, south_up: bool, east_left: bool,
              epsg: int = 32632):
    """Write ``values`` (a north-up, east-right [h, w] array) stored in the given orientation, same footprint."""
    height, width = values.shape[-2:]
    stored, x_first, dx, y_first, dy = values, x0, size, y_north, -size
    if south_up:
        stored, y_first, dy = stored[..., ::-1, :], y_north - height * size, size
    if east_left:
        stored, x_first, dx = stored[..., ::-1], x0 + width * size, -size
    return write_raster(path, np.ascontiguousarray(stored), (x_first, dx, 0.0, y_first, 0.0, dy), epsg=epsg)


ORIENTATIONS = {"north-up": (False, False), "south-up": (True, False), "east-left": (False, True),
                "both flipped": (True, True)}


@pytest.mark.parametrize("optical_orientation", list(ORIENTATIONS))
@pytest.mark.parametrize("dsm_orientation", ["north-up", "south-up"])
@pytest.mark.parametrize("dsm_pixel", [0.5, 1.0])  # the optical's pixel size: read directly; otherwise warped
def test_every_orientation_meets_the_dsm_at_the_same_place(tmp_path, optical_orientation, dsm_orientation,
                                                           dsm_pixel):
    """A raster stored south-up (positive y pixel size) or east-left is read at the right place on the ground."""
    optical, _ = synthetic_pair(80)
    o = _oriented(tmp_path / "o.tif", optical, ORIGIN[0], ORIGIN[1], 0.5, *ORIENTATIONS[optical_orientation])
    side = round(40 / dsm_pixel)
    cols, rows = np.meshgrid(np.arange(side) + 0.5, np.arange(side) + 0.5)
    plane = _plane(ORIGIN[0] + cols * dsm_pixel, ORIGIN[1] - rows * dsm_pixel).astype(np.float32)
    d = _oriented(tmp_path / "d.tif", plane, ORIGIN[0], ORIGIN[1], dsm_pixel, *ORIENTATIONS[dsm_orientation])
    scene = open_scene(o, d, RAW_DSM)
    gt = scene.geotransform
    assert gt == gdal.Open(str(o)).GetGeoTransform()  # the scene runs as the optical raster is stored
    raw, heights, valid = scene.read(0, 0, 80, 80)
    e, n = np.meshgrid(gt[0] + (np.arange(80) + 0.5) * gt[1], gt[3] + (np.arange(80) + 0.5) * gt[5])
    inner = valid & (np.abs(e - ORIGIN[0] - 20) < 19) & (np.abs(n - ORIGIN[1] + 20) < 19)
    assert inner.sum() > 0.8 * 80 * 80
    assert np.abs(heights[0][inner] - _plane(e, n)[inner]).max() < 0.05
    upright = optical
    flip_rows, flip_cols = ORIENTATIONS[optical_orientation]
    stored = upright[:, ::-1] if flip_rows else upright
    stored = stored[:, :, ::-1] if flip_cols else stored
    assert np.allclose(raw, scene.optical_normalizer(stored.astype(np.float32)))
    assert scene.upright_flips == (flip_rows, flip_cols)


def test_a_mask_on_a_south_up_raster_covers_the_right_pixels(tmp_path):
    optical, dsm = synthetic_pair(60)
    o = _oriented(tmp_path / "o.tif", optical, ORIGIN[0], ORIGIN[1], 0.5, True, False)
    d = write_raster(tmp_path / "d.tif", dsm)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp_path / "mask.gpkg"))
    layer = source.CreateLayer("mask", srs=srs, geom_type=ogr.wkbPolygon)
    north_strip = ogr.CreateGeometryFromWkt(  # the northern 10 m (20 rows) of the scene
        f"POLYGON(({ORIGIN[0]} {ORIGIN[1]}, {ORIGIN[0] + 30} {ORIGIN[1]}, {ORIGIN[0] + 30} {ORIGIN[1] - 10}, "
        f"{ORIGIN[0]} {ORIGIN[1] - 10}, {ORIGIN[0]} {ORIGIN[1]}))")
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(north_strip)
    layer.CreateFeature(feature)
    feature = layer = source = None
    scene = open_scene(o, d, ModelCard(), mask=tmp_path / "mask.gpkg")
    _, _, valid = scene.read(0, 0, 60, 60)
    assert valid[40:].all() and not valid[:40].any()  # stored south-up: the northern rows come last


def test_a_paletted_optical_raster_is_expanded_to_rgb(tmp_path):
    optical, dsm = synthetic_pair(60)
    indices = (optical[0] // 64).astype(np.uint8)  # 4 palette entries; 0 is nodata
    path = write_raster(tmp_path / "pal.tif", indices, nodata=0)
    dataset = gdal.Open(str(path), gdal.GA_Update)
    table = gdal.ColorTable()
    colours = [(0, 0, 0), (200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for i, colour in enumerate(colours):
        table.SetColorEntry(i, (*colour, 255))
    dataset.GetRasterBand(1).SetRasterColorTable(table)
    dataset.GetRasterBand(1).SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    dataset = None
    scene = open_scene(path, write_raster(tmp_path / "d.tif", dsm), ModelCard())
    assert "paletted" in scene.notes[0] and "pal.tif" in scene.notes[0]
    raw, _, valid = scene.read(0, 0, 60, 60)
    expected = np.array(colours, np.float32)[indices].transpose(2, 0, 1)
    assert np.array_equal(valid, indices != 0)
    assert np.allclose(raw[:, valid], scene.optical_normalizer(expected)[:, valid])


def _gappy_pair(tmp_path):
    """Optical 100 px with a nodata strip; a DSM that ends 20 px short of the right edge and has a nodata hole."""
    optical, dsm = synthetic_pair(100)
    optical[:, :10] = 0
    dsm[40:60, 20:50] = -9999
    o = write_raster(tmp_path / "o.tif", optical, nodata=0)
    d = write_raster(tmp_path / "d.tif", np.ascontiguousarray(dsm[:, :80]), nodata=-9999)
    gaps = np.zeros((100, 100), bool)
    gaps[40:60, 20:50] = True
    gaps[:, 80:] = True
    optical_valid = np.ones((100, 100), bool)
    optical_valid[:10] = False
    return o, d, gaps, optical_valid


def test_dsm_gaps_are_nodata_or_predicted_with_the_missing_modality_value(tmp_path):
    o, d, gaps, optical_valid = _gappy_pair(tmp_path)
    _, nodata_dsm, nodata_valid = open_scene(o, d, ModelCard(), dsm_gaps="nodata").read(0, 0, 100, 100)
    optical, dsm, valid = open_scene(o, d, ModelCard(), dsm_gaps="predict").read(0, 0, 100, 100)
    assert np.array_equal(nodata_valid, optical_valid & ~gaps)
    assert np.array_equal(valid, optical_valid)  # gaps are predicted: only the optical decides
    assert (dsm[0][gaps] == ABSENT).all()
    assert np.array_equal(dsm[0][valid & ~gaps], nodata_dsm[0][valid & ~gaps])  # the same heights elsewhere
    assert np.abs(dsm[0][valid & ~gaps]).max() > 0.5  # (real heights, not the missing value)
    assert (optical[:, ~valid] == ABSENT).all()
    with pytest.raises(MobanetError, match="--dsm-gaps"):
        open_scene(o, d, ModelCard(), dsm_gaps="fill")


def test_without_a_dsm_every_optical_pixel_is_valid_and_the_dsm_input_is_missing(tmp_path):
    o, d, _, optical_valid = _gappy_pair(tmp_path)
    with_dsm = open_scene(o, d, ModelCard(), dsm_gaps="predict")
    scene = open_scene(o, None, ModelCard())
    assert scene.dsm_absent and scene.dsm_path is None and not with_dsm.dsm_absent
    optical, dsm, valid = scene.read(-7, 0, 120, 100)
    assert (dsm == ABSENT).all() and np.array_equal(valid[:, 7:107], optical_valid)
    assert np.array_equal(optical, with_dsm.read(-7, 0, 120, 100)[0])  # the optical input does not change


def test_hiding_marks_a_modality_missing_in_a_view_only(tmp_path):
    optical, dsm = synthetic_pair(60)
    scene = open_scene(write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm), ModelCard())
    full = scene.read(0, 0, 60, 60)
    no_optical = scene.hiding("optical").read(0, 0, 60, 60)
    no_dsm = scene.crop(0, 0, 60, 60).hiding("dsm")
    assert (no_optical[0] == ABSENT).all() and np.array_equal(no_optical[1], full[1])
    assert np.array_equal(no_optical[2], full[2])  # validity comes from the files, not from what is hidden
    assert no_dsm.dsm_absent and (no_dsm.read(0, 0, 60, 60)[1] == ABSENT).all()
    assert np.array_equal(scene.read(0, 0, 60, 60)[0], full[0])  # the scene itself is untouched
    with pytest.raises(ValueError, match="modalities"):
        scene.hiding("lidar")
