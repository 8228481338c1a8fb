"""Writing rasters with GDAL so that a failed write is an error, never a silently corrupt file.

GDAL reports write errors (disk full, file too large) when it flushes,
often only while a dataset closes, and GDAL 3.6's Python bindings then
merely print "Exception ignored" from the destructor. `gdal_write_errors`
collects those errors and raises them as an `OutputError`. `write_geotiff`
writes a whole in-memory raster as a member of an `OutputSet`, verified at
commit by reading it back.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from osgeo import gdal

from mobanet.classes import set_class_palette
from mobanet.errors import OutputError
from mobanet.fileutil import GDAL_SIDECARS, OutputSet, write_error

gdal.UseExceptions()

GDAL_TYPES = {np.dtype("uint8"): gdal.GDT_Byte, np.dtype("uint16"): gdal.GDT_UInt16,
              np.dtype("float32"): gdal.GDT_Float32}


@contextlib.contextmanager
def gdal_write_errors(final: str | os.PathLike, written: Path | None = None) -> Iterator[None]:
    """Raise every GDAL error inside the block, also one from closing a dataset, as an `OutputError`."""
    messages: list[str] = []

    def on_gdal_error(level: int, number: int, message: str) -> None:
        if level >= gdal.CE_Failure:
            messages.append(message)

    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: messages.append(str(unraisable.exc_value))
    gdal.PushErrorHandler(on_gdal_error)
    try:
        yield
    except RuntimeError as exc:  # gdal.UseExceptions(): the error of a call
        messages.append(str(exc))
        traceback.clear_frames(exc.__traceback__)  # frames of the failed call hold the dataset: close it here
    finally:
        gdal.PopErrorHandler()
        sys.unraisablehook = hook
    if messages:
        raise write_error(final, messages[0], written)


def write_geotiff(outputs: OutputSet, final: str | os.PathLike, bands: np.ndarray, geotransform: tuple[float, ...],
                  projection: str, creation_options: list[str], nodata: float | None = None,
                  classes: tuple[list[str], list[tuple[int, int, int]]] | None = None) -> None:
    """Write ``bands`` [n, h, w] as a GeoTIFF through ``outputs``; 3 bands are tagged R,G,B.

    ``classes`` (names, colours) gives a one-band class raster its colour
    table and category names. At commit the file must read back equal.
    """
    def verify(path: Path) -> None:
        with gdal_write_errors(final, path):
            dataset = gdal.Open(str(path))
            same = (dataset.RasterCount == bands.shape[0]
                    and np.array_equal(dataset.ReadAsArray().reshape(bands.shape), bands, equal_nan=True))
            dataset = None
        if not same:
            raise OutputError(f"Writing {final} failed: the file reads back different from what was written; "
                              "check the disk and write it again.")

    output = outputs.add(final, verify=verify, sidecars=GDAL_SIDECARS)
    dataset = band = None
    with gdal_write_errors(final, output.temp):
        try:
            dataset = gdal.GetDriverByName("GTiff").Create(str(output.temp), bands.shape[2], bands.shape[1],
                                                           bands.shape[0], GDAL_TYPES[bands.dtype], creation_options)
            dataset.SetGeoTransform(geotransform)
            dataset.SetProjection(projection)
            for index, values in enumerate(bands, start=1):
                band = dataset.GetRasterBand(index)
                if nodata is not None:
                    band.SetNoDataValue(nodata)
                band.WriteArray(values)
            if bands.shape[0] == 3:
                for index, colour in enumerate((gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand), start=1):
                    dataset.GetRasterBand(index).SetColorInterpretation(colour)
            elif classes is not None:
                set_class_palette(dataset.GetRasterBand(1), *classes)
            dataset.FlushCache()
        finally:
            band = dataset = None  # the rest is written while the dataset closes
