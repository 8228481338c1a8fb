"""The files a segmentation produces: class raster, confidence raster, QML style, polygons.

Rasters are written block by block as they are predicted (tiled DEFLATE
GeoTIFF, internal overviews), so no full-size array is ever held. The class
raster carries its classes (colour table, category names, nodata 255) and a
QGIS style beside it, so it opens classified in QGIS and any GDAL tool.
Callers pass temporary paths (see `mobanet.fileutil.atomic_output`).
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from osgeo import gdal, ogr, osr

from mobanet.classes import IGNORE_INDEX, set_class_palette

GTIFF_OPTIONS = ["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"]
COG_OPTIONS = ["COMPRESS=DEFLATE", "BLOCKSIZE=512", "BIGTIFF=IF_SAFER"]
OVERVIEW_MIN_SIDE = 256  # stop adding overview levels below this size


def overview_levels(width: int, height: int) -> list[int]:
    """Factors 2, 4, 8, ... while the overview keeps at least OVERVIEW_MIN_SIDE pixels on its longer side."""
    levels, factor = [], 2
    while max(width, height) / factor >= OVERVIEW_MIN_SIDE:
        levels.append(factor)
        factor *= 2
    return levels


class BlockRaster:
    """A single-band tiled GeoTIFF filled by row blocks, finished with overviews (or as a COG)."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, geotransform: tuple[float, ...],
                 projection: str, data_type: int, nodata: float, resampling: str, cog: bool = False):
        self.path = Path(path)
        self.resampling = resampling  # overview resampling: NEAREST for classes, AVERAGE for confidence
        self.cog = cog
        # A COG is translated from a plain tiled GeoTIFF at the end; it cannot be written in blocks.
        self._gtiff_path = self.path.with_name(self.path.stem + ".blocks.tif") if cog else self.path
        driver = gdal.GetDriverByName("GTiff")
        options = GTIFF_OPTIONS + (["PREDICTOR=3"] if data_type == gdal.GDT_Float32 else [])
        self.dataset = driver.Create(str(self._gtiff_path), width, height, 1, data_type, options)
        self.dataset.SetGeoTransform(geotransform)
        self.dataset.SetProjection(projection)
        self.band = self.dataset.GetRasterBand(1)
        self.band.SetNoDataValue(nodata)

    def write(self, y: int, rows: np.ndarray) -> None:
        self.band.WriteArray(rows, 0, y)

    def close(self) -> None:
        """Build overviews (or translate to COG) and flush everything to ``path``."""
        levels = overview_levels(self.dataset.RasterXSize, self.dataset.RasterYSize)
        if self.cog:
            self.dataset.FlushCache()
            options = COG_OPTIONS + [f"OVERVIEW_RESAMPLING={self.resampling}"]
            if self.band.DataType == gdal.GDT_Float32:
                options.append("PREDICTOR=YES")
            gdal.Translate(str(self.path), self.dataset, format="COG", creationOptions=options)
            self.band = self.dataset = None
            gdal.GetDriverByName("GTiff").Delete(str(self._gtiff_path))
            return
        if levels:
            self.dataset.BuildOverviews(self.resampling, levels)
        self.band = None
        self.dataset = None

    def discard(self) -> None:
        """Drop an unfinished raster (the block file of a COG included)."""
        self.band = self.dataset = None
        if self.cog and self._gtiff_path.exists():
            gdal.GetDriverByName("GTiff").Delete(str(self._gtiff_path))


def class_raster(path: str | os.PathLike, width: int, height: int, geotransform: tuple[float, ...],
                 projection: str, class_names: list[str], class_colors: list[tuple[int, int, int]],
                 cog: bool = False) -> BlockRaster:
    """uint8 classes, nodata 255, with the model's colour table and class (category) names."""
    raster = BlockRaster(path, width, height, geotransform, projection, gdal.GDT_Byte, IGNORE_INDEX, "NEAREST", cog)
    set_class_palette(raster.band, class_names, class_colors)
    raster.band.SetDescription("class")
    return raster


def confidence_raster(path: str | os.PathLike, width: int, height: int, geotransform: tuple[float, ...],
                      projection: str, cog: bool = False) -> BlockRaster:
    """float32 top-class probability in [0, 1], nodata 0 (no pixel has probability 0)."""
    raster = BlockRaster(path, width, height, geotransform, projection, gdal.GDT_Float32, 0.0, "AVERAGE", cog)
    raster.band.SetDescription("confidence")
    return raster


def write_qml(path: str | os.PathLike, class_names: list[str], class_colors: list[tuple[int, int, int]]) -> None:
    """A QGIS paletted style (one entry a class); QGIS loads OUT.qml beside OUT.tif by itself."""
    entries = "\n".join(
        f'        <paletteEntry value="{i}" color="#{r:02x}{g:02x}{b:02x}" alpha="255" label={quoteattr(name)}/>'
        for i, (name, (r, g, b)) in enumerate(zip(class_names, class_colors, strict=True)))
    Path(path).write_text(f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0" colorizeStrength="100"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
""", encoding="utf-8")


def write_polygons(path: str | os.PathLike, class_path: str | os.PathLike, class_names: list[str],
                   min_area: float = 0.0) -> int:
    """Polygonise a class raster into a GeoPackage layer ``classes`` (class_id, class_name, area).

    Polygons smaller than ``min_area`` (square CRS units, m² for projected
    CRSs) are dropped. Returns the number of polygons kept.
    """
    source = gdal.Open(str(class_path))
    band = source.GetRasterBand(1)
    srs = osr.SpatialReference(wkt=source.GetProjection())
    output = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = output.CreateLayer("classes", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    name_field = ogr.FieldDefn("class_name", ogr.OFTString)
    layer.CreateField(name_field)
    layer.CreateField(ogr.FieldDefn("area", ogr.OFTReal))
    gdal.Polygonize(band, band.GetMaskBand(), layer, 0, [])
    found = []
    for feature in layer:
        geometry = feature.GetGeometryRef()
        found.append((feature.GetFID(), feature.GetField("class_id"), geometry.GetArea() if geometry else 0.0))
    output.StartTransaction()  # edits after the scan: a layer must not change under its own iteration
    kept = 0
    for fid, class_id, area in found:
        if area < min_area or class_id is None or not 0 <= class_id < len(class_names):
            layer.DeleteFeature(fid)
            continue
        feature = layer.GetFeature(fid)
        feature.SetField("class_name", class_names[class_id])
        feature.SetField("area", area)
        layer.SetFeature(feature)
        kept += 1
    output.CommitTransaction()
    layer = output = band = source = None
    return kept
