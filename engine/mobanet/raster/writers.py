"""The files a segmentation produces: class raster, confidence raster, QML style, polygons.

Rasters are written block by block as they are predicted (tiled DEFLATE
GeoTIFF, internal overviews), so no full-size array is ever held. The class
raster carries its classes (colour table, category names, nodata 255) and a
QGIS style beside it, so it opens classified in QGIS and any GDAL tool.
Callers pass temporary paths and verify the closed files (see `mobanet.fileutil.OutputSet`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from osgeo import gdal, ogr, osr

from mobanet.classes import IGNORE_INDEX, set_class_palette
from mobanet.errors import OutputError
from mobanet.fileutil import write_error
from mobanet.geotiff import gdal_write_errors

GTIFF_OPTIONS = ["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"]
COG_OPTIONS = ["COMPRESS=DEFLATE", "BLOCKSIZE=512", "BIGTIFF=IF_SAFER"]
OVERVIEW_MIN_SIDE = 256  # stop adding overview levels below this size
VERIFY_ROWS = 512  # rows per read when a written raster is read back


def overview_levels(width: int, height: int) -> list[int]:
    """Factors 2, 4, 8, ... while the overview keeps at least OVERVIEW_MIN_SIDE pixels on its longer side."""
    levels, factor = [], 2
    while max(width, height) / factor >= OVERVIEW_MIN_SIDE:
        levels.append(factor)
        factor *= 2
    return levels


class BlockRaster:
    """A single-band tiled GeoTIFF filled by row blocks, finished with overviews (or as a COG).

    ``path`` is where it is written (a temporary name), ``final`` the name
    messages use. The rows written are hashed in order, so `verify` can read
    the finished file back and prove it holds exactly them.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, geotransform: tuple[float, ...],
                 projection: str, data_type: int, nodata: float, resampling: str, cog: bool = False,
                 final: str | os.PathLike | None = None):
        self.path = Path(path)
        self.final = Path(final) if final is not None else self.path
        self.resampling = resampling  # overview resampling: NEAREST for classes, AVERAGE for confidence
        self.cog = cog
        # A COG is translated from a plain tiled GeoTIFF at the end; it cannot be written in blocks.
        self._gtiff_path = self.path.with_name(self.path.stem + ".blocks.tif") if cog else self.path
        self._digest = hashlib.sha256()
        self._next_row = 0
        driver = gdal.GetDriverByName("GTiff")
        options = GTIFF_OPTIONS + (["PREDICTOR=3"] if data_type == gdal.GDT_Float32 else [])
        with gdal_write_errors(self.final, self._gtiff_path):
            self.dataset = driver.Create(str(self._gtiff_path), width, height, 1, data_type, options)
            self.dataset.SetGeoTransform(geotransform)
            self.dataset.SetProjection(projection)
            self.band = self.dataset.GetRasterBand(1)
            self.band.SetNoDataValue(nodata)
        self.width, self.height = width, height

    def write(self, y: int, rows: np.ndarray) -> None:
        """Write rows from row ``y`` down; blocks must come top to bottom, each row once."""
        if y != self._next_row:
            raise ValueError(f"internal error: rows written out of order ({y} after {self._next_row})")
        try:
            with gdal_write_errors(self.final, self._gtiff_path):
                self.band.WriteArray(rows, 0, y)
        except OutputError:
            self.discard()  # a raster that failed a write is finished; closing it must not raise again
            raise
        self._digest.update(np.ascontiguousarray(rows, dtype=self._numpy_type()).tobytes())
        self._next_row += rows.shape[0]

    def _numpy_type(self) -> np.dtype:
        return np.dtype(np.uint8) if self.band.DataType == gdal.GDT_Byte else np.dtype(np.float32)

    def close(self) -> None:
        """Build overviews (or translate to COG) and flush everything to ``path``; write errors raise."""
        if self._next_row != self.height:
            raise ValueError(f"internal error: {self._next_row} of {self.height} rows of {self.final} written")
        self._dtype = self._numpy_type()
        levels = overview_levels(self.width, self.height)
        with gdal_write_errors(self.final, self._gtiff_path):
            try:
                if self.cog:
                    self.dataset.FlushCache()
                    options = COG_OPTIONS + [f"OVERVIEW_RESAMPLING={self.resampling}"]
                    if self.band.DataType == gdal.GDT_Float32:
                        options.append("PREDICTOR=YES")
                    cog = gdal.Translate(str(self.path), self.dataset, format="COG", creationOptions=options)
                    cog.FlushCache()
                    cog = None
                else:
                    if levels:
                        self.dataset.BuildOverviews(self.resampling, levels)
                    self.dataset.FlushCache()
            finally:
                self.band = self.dataset = cog = None  # GDAL writes the rest while a dataset closes
        if self.cog:
            gdal.GetDriverByName("GTiff").Delete(str(self._gtiff_path))

    def verify(self, path: Path) -> None:
        """Read the closed file back: every row as written, every overview readable."""
        digest = hashlib.sha256()
        with gdal_write_errors(self.final, path):
            dataset = gdal.Open(str(path))
            band = dataset.GetRasterBand(1)
            if (dataset.RasterXSize, dataset.RasterYSize) != (self.width, self.height):
                raise OutputError(f"Writing {self.final} failed: it reads back with another size; check the disk "
                                  "and write it again.")
            for y in range(0, self.height, VERIFY_ROWS):
                rows = band.ReadAsArray(0, y, self.width, min(VERIFY_ROWS, self.height - y))
                digest.update(np.ascontiguousarray(rows, dtype=self._dtype).tobytes())
            for level in range(band.GetOverviewCount()):
                band.GetOverview(level).Checksum()
            band = dataset = None
        if digest.digest() != self._digest.digest():
            raise OutputError(f"Writing {self.final} failed: the file reads back different from what was written; "
                              "check the disk and write it again.")

    def discard(self) -> None:
        """Drop an unfinished raster (the block file of a COG included); errors no longer matter."""
        with contextlib.suppress(OutputError):
            with gdal_write_errors(self.final):
                self.band = self.dataset = None
        if self.cog and self._gtiff_path.exists():
            gdal.GetDriverByName("GTiff").Delete(str(self._gtiff_path))


def class_raster(path: str | os.PathLike, width: int, height: int, geotransform: tuple[float, ...],
                 projection: str, class_names: list[str], class_colors: list[tuple[int, int, int]],
                 cog: bool = False, final: str | os.PathLike | None = None) -> BlockRaster:
    """uint8 classes, nodata 255, with the model's colour table and class (category) names."""
    raster = BlockRaster(path, width, height, geotransform, projection, gdal.GDT_Byte, IGNORE_INDEX, "NEAREST", cog,
                         final)
    set_class_palette(raster.band, class_names, class_colors)
    raster.band.SetDescription("class")
    return raster


def confidence_raster(path: str | os.PathLike, width: int, height: int, geotransform: tuple[float, ...],
                      projection: str, cog: bool = False, final: str | os.PathLike | None = None) -> BlockRaster:
    """float32 top-class probability in [0, 1], nodata 0 (no pixel has probability 0)."""
    raster = BlockRaster(path, width, height, geotransform, projection, gdal.GDT_Float32, 0.0, "AVERAGE", cog, final)
    raster.band.SetDescription("confidence")
    return raster


def qml_style(class_names: list[str], class_colors: list[tuple[int, int, int]]) -> str:
    """A QGIS paletted style (one entry a class); QGIS loads OUT.qml beside OUT.tif by itself."""
    entries = "\n".join(
        f'        <paletteEntry value="{i}" color="#{r:02x}{g:02x}{b:02x}" alpha="255" label={quoteattr(name)}/>'
        for i, (name, (r, g, b)) in enumerate(zip(class_names, class_colors, strict=True)))
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
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
"""


def write_polygons(path: str | os.PathLike, class_path: str | os.PathLike, class_names: list[str],
                   min_area: float = 0.0, final: str | os.PathLike | None = None) -> int:
    """Polygonise a class raster into a GeoPackage layer ``classes`` (class_id, class_name, area).

    Polygons smaller than ``min_area`` (square CRS units, m² for projected
    CRSs) are dropped. Returns the number of polygons kept. Write errors
    raise an `OutputError` naming ``final`` (default ``path``).
    """
    source = band = output = layer = feature = None
    with gdal_write_errors(final if final is not None else path, Path(path)):
        try:
            source = gdal.Open(str(class_path))
            band = source.GetRasterBand(1)
            srs = osr.SpatialReference(wkt=source.GetProjection())
            output = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
            layer = output.CreateLayer("classes", srs=srs, geom_type=ogr.wkbPolygon)
            layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
            layer.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
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
        finally:
            feature = layer = output = band = source = None  # the GeoPackage is written while it closes
    return kept


def verify_polygons(path: Path, count: int, final: str | os.PathLike) -> None:
    """The GeoPackage passes SQLite's integrity check and holds ``count`` polygons."""
    try:
        with contextlib.closing(sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)) as db:
            status = db.execute("PRAGMA integrity_check").fetchone()[0]
            rows = db.execute('SELECT COUNT(*) FROM "classes"').fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise write_error(final, exc, Path(path)) from exc
    if status != "ok" or rows != count:
        raise OutputError(f"Writing {final} failed: the GeoPackage reads back damaged ({status}, {rows} of {count} "
                          "polygons); check the disk and write it again.")
