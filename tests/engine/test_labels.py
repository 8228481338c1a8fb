"""Reading labels onto a grid: index rasters, ISPRS colour rasters and vector polygons, with real files."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from mobanet.classes import ISPRS_CLASSES
from mobanet.errors import InputError
from mobanet.labels import RasterGrid, read_labels

gdal.UseExceptions()
ogr.UseExceptions()

NAMES = [c.name for c in ISPRS_CLASSES]
COLOURS = [c.color for c in ISPRS_CLASSES]
ORIGIN = (496_000.0, 5_421_000.0)
PIXEL = 0.5


def utm(epsg: int = 32632) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def write_raster(path, bands: np.ndarray, origin=ORIGIN, pixel=PIXEL, epsg=32632, nodata=None):
    bands = bands if bands.ndim == 3 else bands[None]
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), bands.shape[2], bands.shape[1], bands.shape[0],
                                                   gdal.GDT_Byte)
    dataset.SetGeoTransform((origin[0], pixel, 0, origin[1], 0, -pixel))
    dataset.SetProjection(utm(epsg).ExportToWkt())
    for i, values in enumerate(bands, start=1):
        if nodata is not None:
            dataset.GetRasterBand(i).SetNoDataValue(nodata)
        dataset.GetRasterBand(i).WriteArray(values)
    dataset = None
    return path


@pytest.fixture
def grid():
    return RasterGrid(40, 30, (ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL), utm().ExportToWkt(), "optical.tif")


def index_labels() -> np.ndarray:
    labels = np.zeros((30, 40), np.uint8)
    labels[:, 10:20] = 1
    labels[10:20, 20:] = 2
    labels[20:, 20:30] = 3
    labels[25:, 30:] = 4
    labels[0:5, 35:] = 5
    return labels


def test_index_raster_is_read_with_nodata_as_ignore(tmp_path, grid):
    values = index_labels()
    values[0, 0], values[1, 1] = 255, 9
    path = write_raster(tmp_path / "labels.tif", values, nodata=9)
    labels = read_labels(path, grid, NAMES, COLOURS)
    expected = index_labels()
    expected[0, 0] = expected[1, 1] = 255
    np.testing.assert_array_equal(labels, expected)


def test_unknown_index_values_are_listed(tmp_path, grid):
    values = index_labels()
    values[3, 3], values[4, 4] = 7, 12
    path = write_raster(tmp_path / "labels.tif", values)
    with pytest.raises(InputError, match=r"values 7, 12 .*6 classes"):
        read_labels(path, grid, NAMES, COLOURS)


def test_raster_off_the_grid_names_both_files(tmp_path, grid):
    shifted = write_raster(tmp_path / "shifted.tif", index_labels(), origin=(ORIGIN[0] + 0.2, ORIGIN[1]))
    with pytest.raises(InputError, match=r"shifted\.tif.*optical\.tif"):
        read_labels(shifted, grid, NAMES, COLOURS)
    other_crs = write_raster(tmp_path / "crs.tif", index_labels(), epsg=25832)
    with pytest.raises(InputError, match=r"EPSG:25832.*EPSG:32632"):
        read_labels(other_crs, grid, NAMES, COLOURS)
    coarse = write_raster(tmp_path / "coarse.tif", index_labels(), pixel=1.0)
    with pytest.raises(InputError, match="gdalwarp"):
        read_labels(coarse, grid, NAMES, COLOURS)


def test_a_larger_aligned_raster_gives_the_grids_window(tmp_path, grid):
    big = np.full((50, 60), 2, np.uint8)
    big[5:35, 7:47] = index_labels()
    path = write_raster(tmp_path / "big.tif", big, origin=(ORIGIN[0] - 7 * PIXEL, ORIGIN[1] + 5 * PIXEL))
    np.testing.assert_array_equal(read_labels(path, grid, NAMES, COLOURS), index_labels())


def test_isprs_colour_raster_maps_colours_to_classes(tmp_path, grid):
    rgb = np.array(COLOURS, np.uint8)[index_labels()].transpose(2, 0, 1)
    path = write_raster(tmp_path / "colours.tif", rgb)
    np.testing.assert_array_equal(read_labels(path, grid, NAMES, COLOURS), index_labels())


def test_unknown_colours_are_listed(tmp_path, grid):
    rgb = np.array(COLOURS, np.uint8)[index_labels()].transpose(2, 0, 1).copy()
    rgb[:, 2, 2] = (12, 34, 56)
    path = write_raster(tmp_path / "colours.tif", rgb)
    with pytest.raises(InputError, match=r"\(12, 34, 56\) x1"):
        read_labels(path, grid, NAMES, COLOURS)


def test_colour_raster_nodata_becomes_ignore(tmp_path, grid):
    rgb = np.array(COLOURS, np.uint8)[index_labels()].transpose(2, 0, 1).copy()
    rgb[:, 0, :] = 0
    path = write_raster(tmp_path / "colours.tif", rgb, nodata=0)
    labels = read_labels(path, grid, NAMES, COLOURS)
    assert (labels[0] == 255).all() and (labels[1:] == index_labels()[1:]).all()


def write_polygons(path, driver: str, epsg: int, features: list[tuple[tuple[float, float, float, float], object]],
                   field: str = "class", kind=ogr.OFTString):
    """Rectangles (xmin, ymin, xmax, ymax in UTM 32N metres) with one attribute, stored in ``epsg``."""
    target = utm(epsg) if epsg != 4326 else None
    if target is None:
        target = osr.SpatialReference()
        target.ImportFromEPSG(4326)
        target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(utm(), target)
    source = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    layer = source.CreateLayer("labels", target, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(field, kind))
    layer.CreateField(ogr.FieldDefn("note", ogr.OFTString))
    for (x0, y0, x1, y1), value in features:
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)):
            ring.AddPoint_2D(*transform.TransformPoint(x, y)[:2])
        polygon = ogr.Geometry(ogr.wkbPolygon)
        polygon.AddGeometry(ring)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(polygon)
        feature.SetField(field, value)
        layer.CreateFeature(feature)
    source = None
    return path


def box(col0, row0, col1, row1):
    """Pixel box -> UTM rectangle on the test grid."""
    return (ORIGIN[0] + col0 * PIXEL, ORIGIN[1] - row1 * PIXEL, ORIGIN[0] + col1 * PIXEL, ORIGIN[1] - row0 * PIXEL)


def test_polygons_with_class_names_are_rasterised_on_the_grid(tmp_path, grid):
    path = write_polygons(tmp_path / "labels.gpkg", "GPKG", 32632,
                          [(box(0, 0, 10, 30), "impervious surfaces"), (box(10, 0, 20, 30), "Building"),
                           (box(30, 25, 40, 30), "car")])
    labels = read_labels(path, grid, NAMES, COLOURS)
    assert (labels[:, :10] == 0).all() and (labels[:, 10:20] == 1).all()
    assert (labels[25:, 30:] == 4).all() and (labels[:25, 20:] == 255).all()


def test_polygons_in_another_crs_are_reprojected(tmp_path, grid):
    path = write_polygons(tmp_path / "labels.gpkg", "GPKG", 4326, [(box(10, 5, 30, 25), "tree")])
    labels = read_labels(path, grid, NAMES, COLOURS)
    rows, cols = np.nonzero(labels == 3)
    assert abs(rows.min() - 5) <= 1 and abs(rows.max() - 24) <= 1
    assert abs(cols.min() - 10) <= 1 and abs(cols.max() - 29) <= 1


def test_shapefile_with_index_field_named_by_the_caller(tmp_path, grid):
    path = write_polygons(tmp_path / "labels.shp", "ESRI Shapefile", 32632,
                          [(box(0, 0, 40, 15), 2), (box(0, 15, 40, 30), 3)], field="cls", kind=ogr.OFTInteger)
    labels = read_labels(path, grid, NAMES, COLOURS, class_field="cls")
    assert (labels[:15] == 2).all() and (labels[15:] == 3).all()


def test_missing_class_field_lists_the_fields(tmp_path, grid):
    path = write_polygons(tmp_path / "labels.gpkg", "GPKG", 32632, [(box(0, 0, 10, 10), 1)], field="kind",
                          kind=ogr.OFTInteger)
    with pytest.raises(InputError, match=r"kind, note"):
        read_labels(path, grid, NAMES, COLOURS)
    with pytest.raises(InputError, match=r"no field 'klass'.*kind, note"):
        read_labels(path, grid, NAMES, COLOURS, class_field="klass")


def test_unknown_class_names_are_listed(tmp_path, grid):
    path = write_polygons(tmp_path / "labels.gpkg", "GPKG", 32632, [(box(0, 0, 10, 10), "water")])
    with pytest.raises(InputError, match="'water'"):
        read_labels(path, grid, NAMES, COLOURS)


def test_labels_outside_the_grid_are_an_error(tmp_path, grid):
    path = write_polygons(tmp_path / "labels.gpkg", "GPKG", 32632, [(box(100, 100, 110, 110), "tree")])
    with pytest.raises(InputError, match="no labelled pixel"):
        read_labels(path, grid, NAMES, COLOURS)
    empty = write_raster(tmp_path / "empty.tif", np.full((30, 40), 255, np.uint8))
    with pytest.raises(InputError, match="no labelled pixel"):
        read_labels(empty, grid, NAMES, COLOURS)


def test_raster_grid_from_a_file(tmp_path):
    path = write_raster(tmp_path / "any.tif", index_labels())
    grid = RasterGrid.from_dataset(path)
    assert (grid.width, grid.height) == (40, 30)
    assert grid.geotransform == (ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL)
    assert grid.path == str(path)
    with pytest.raises(InputError, match="does not exist"):
        RasterGrid.from_dataset(tmp_path / "missing.tif")
