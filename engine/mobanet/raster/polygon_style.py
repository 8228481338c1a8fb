"""The class colours of land-cover polygons, stored inside their GeoPackage.

QGIS keeps a layer's default style in the GeoPackage table ``layer_styles``
(one row per style; the row marked ``useAsDefault`` is applied whenever the
layer is opened). Writing the model's classes there, as a categorized style
on ``class_id``, makes the polygons open in the class colours everywhere: in
QGIS when Processing loads them, when a user drags the file in later, on
another machine, and in QGIS Server, with no sidecar file to lose.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

from osgeo import ogr

from mobanet.fileutil import write_error
from mobanet.geotiff import gdal_write_errors

STYLES_TABLE = "layer_styles"
STYLE_NAME = "MoBaNet classes"

# The columns QGIS reads and writes in a GeoPackage's style table.
_COLUMNS = (
    ("f_table_catalog", ogr.OFTString), ("f_table_schema", ogr.OFTString), ("f_table_name", ogr.OFTString),
    ("f_geometry_column", ogr.OFTString), ("styleName", ogr.OFTString), ("styleQML", ogr.OFTString),
    ("styleSLD", ogr.OFTString), ("useAsDefault", ogr.OFTInteger), ("description", ogr.OFTString),
    ("owner", ogr.OFTString), ("ui", ogr.OFTString), ("update_time", ogr.OFTDateTime),
)


def categorized_qml(field: str, class_names: list[str], class_colors: list[tuple[int, int, int]]) -> str:
    """A QGIS vector style: one category per class value of ``field``, filled with the class colour."""
    categories, symbols = [], []
    for index, (name, (r, g, b)) in enumerate(zip(class_names, class_colors, strict=True)):
        categories.append(f'      <category render="true" symbol="{index}" value="{index}" label={quoteattr(name)}/>')
        symbols.append(f"""      <symbol type="fill" name="{index}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option type="QString" name="color" value="{r},{g},{b},255"/>
            <Option type="QString" name="style" value="solid"/>
            <Option type="QString" name="outline_style" value="no"/>
          </Option>
        </layer>
      </symbol>""")
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
  <renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" forceraster="0" enableorderby="0">
    <categories>
{chr(10).join(categories)}
    </categories>
    <symbols>
{chr(10).join(symbols)}
    </symbols>
  </renderer-v2>
</qgis>
"""


def store_polygon_style(path: str | os.PathLike, class_names: list[str], class_colors: list[tuple[int, int, int]],
                        field: str = "class_id", final: str | os.PathLike | None = None) -> None:
    """Make the class colours the default style of every polygon layer of the GeoPackage ``path``.

    Write errors raise an `OutputError` naming ``final`` (default ``path``).
    """
    dataset = styles = row = None
    with gdal_write_errors(final if final is not None else path, Path(path)):
        try:
            dataset = ogr.Open(str(path), update=1)
            if dataset is None:
                raise write_error(final if final is not None else path, "it cannot be opened again", Path(path))
            layers = [dataset.GetLayer(i) for i in range(dataset.GetLayerCount())]
            targets = [(layer.GetName(), layer.GetGeometryColumn()) for layer in layers
                       if layer.GetName() != STYLES_TABLE]
            styles = dataset.GetLayerByName(STYLES_TABLE) or _create_styles_table(dataset)
            qml = categorized_qml(field, class_names, class_colors)
            dataset.StartTransaction()
            for table, geometry_column in targets:
                row = ogr.Feature(styles.GetLayerDefn())
                for name, value in (("f_table_catalog", ""), ("f_table_schema", ""), ("f_table_name", table),
                                    ("f_geometry_column", geometry_column), ("styleName", STYLE_NAME),
                                    ("styleQML", qml), ("styleSLD", ""), ("useAsDefault", 1), ("owner", ""),
                                    ("ui", ""), ("description", "Land-cover classes and colours of the model")):
                    row.SetField(name, value)
                styles.CreateFeature(row)
            dataset.CommitTransaction()
        finally:
            row = styles = layers = dataset = None  # the GeoPackage is written while it closes


def _create_styles_table(dataset: ogr.DataSource) -> ogr.Layer:
    """The ``layer_styles`` table as QGIS creates it (an attributes table with these columns)."""
    table = dataset.CreateLayer(STYLES_TABLE, geom_type=ogr.wkbNone, options=["FID=id"])
    for name, kind in _COLUMNS:
        definition = ogr.FieldDefn(name, kind)
        if name == "useAsDefault":
            definition.SetSubType(ogr.OFSTBoolean)
        if name == "update_time":
            definition.SetDefault("CURRENT_TIMESTAMP")
        table.CreateField(definition)
    return table
