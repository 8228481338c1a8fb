"""The class colours stored in the polygons' GeoPackage (``layer_styles``), as QGIS reads them."""

import xml.etree.ElementTree as ET

import numpy as np
from osgeo import ogr

from mobanet.raster.polygon_style import STYLES_TABLE, store_polygon_style
from mobanet.raster.writers import write_polygons

from .conftest import write_raster

NAMES = ["road & square", "building", "tree"]
COLORS = [(255, 255, 255), (0, 0, 255), (10, 200, 30)]


def _style_rows(path):
    dataset = ogr.Open(str(path))
    table = dataset.GetLayerByName(STYLES_TABLE)
    rows = [{name: feature.GetField(name) for name in ("f_table_name", "f_geometry_column", "styleName",
                                                      "styleQML", "useAsDefault")} for feature in table]
    layers = [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())]
    del table, dataset
    return rows, layers


def test_polygons_carry_a_default_categorized_style_in_the_class_colours(tmp_path):
    classes = np.zeros((40, 60), np.uint8)
    classes[10:30, 5:25], classes[5:15, 40:55] = 1, 2
    raster = write_raster(tmp_path / "classes.tif", classes, nodata=255)
    gpkg = tmp_path / "classes.gpkg"
    assert write_polygons(gpkg, raster, NAMES) == 3
    store_polygon_style(gpkg, NAMES, COLORS)

    rows, layers = _style_rows(gpkg)
    assert layers[0] == "classes"  # the data stays the first layer (what OGR and QGIS open by default)
    assert len(rows) == 1
    row = rows[0]
    assert (row["f_table_name"], row["f_geometry_column"], row["useAsDefault"]) == ("classes", "geom", 1)
    renderer = ET.fromstring(row["styleQML"].split("\n", 1)[1]).find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_id"
    categories = renderer.findall("categories/category")
    assert [(c.get("value"), c.get("label")) for c in categories] == [(str(i), n) for i, n in enumerate(NAMES)]
    symbols = {s.get("name"): s for s in renderer.findall("symbols/symbol")}
    for category, color in zip(categories, COLORS, strict=True):
        fill = symbols[category.get("symbol")].find("layer/Option/Option[@name='color']").get("value")
        assert fill == "{},{},{},255".format(*color)
