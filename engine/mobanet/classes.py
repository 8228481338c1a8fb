"""The ISPRS 2D labelling classes, the default class list of a model."""

from __future__ import annotations

from dataclasses import dataclass

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
