"""The ISPRS 2D labelling classes, the default class list of a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from osgeo import gdal

IGNORE_INDEX = 255  # label nodata / ignore, and nodata of classified rasters


@dataclass(frozen=True)
class ClassInfo:
    name: str
    color: tuple[int, int, int]


ISPRS_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo("impervious surfaces", (255, 255, 255)),
    ClassInfo("building", (0, 0, 255)),
    ClassInfo("low vegetation", (0, 255, 255)),
    ClassInfo("tree", (0, 255, 0)),
    ClassInfo("car", (255, 255, 0)),
    ClassInfo("clutter", (255, 0, 0)),
)
CLUTTER_NAME = "clutter"


def set_class_palette(band: gdal.Band, names: Sequence[str], colors: Sequence[tuple[int, int, int]]) -> None:
    """Make a uint8 band a classified one: colour table (255 transparent) and class (category) names."""
    table = gdal.ColorTable()
    for index, color in enumerate(colors):
        table.SetColorEntry(index, (*color, 255))
    table.SetColorEntry(IGNORE_INDEX, (0, 0, 0, 0))
    band.SetRasterColorTable(table)
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    band.SetCategoryNames(list(names))
