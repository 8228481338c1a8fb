"""The grid of overlapping square windows that covers a raster.

The grid is anchored to the map, not to the file: window starts sit at
multiples of the stride counted from the map's pixel origin (``anchor``, the
raster's offset in whole pixels from x = 0, y = 0 of its CRS). Two rasters on
the same pixel grid, one cropped from the other by any number of pixels, get
windows at the same places on the ground, so the prediction at a pixel does
not depend on where the file starts. Windows may reach past the raster edge;
`Scene.read` pads them by reflection.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


def window_stride(window: int, overlap: float) -> int:
    """Pixels between window starts for a fractional overlap in [0, 1)."""
    return max(1, round(window * (1.0 - overlap)))


def axis_starts(size: int, window: int, stride: int, anchor: int) -> list[int]:
    """Window starts on one axis at anchor + k * stride, from the last one at or before 0 to the last one before
    ``size``: together they cover [0, size), and every window overlaps it."""
    first = -(anchor % stride)  # largest start <= 0 on the anchored lattice
    while first + window <= 0:  # window ends before the raster: step inwards
        first += stride
    starts = []
    start = first
    while start < size:
        starts.append(start)
        start += stride
    return starts


@dataclass(frozen=True)
class WindowGrid:
    """Window starts (pixels, relative to the raster origin; may be negative) in row-major order."""

    xs: tuple[int, ...]
    ys: tuple[int, ...]
    window: int
    stride: int

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for y in self.ys:
            for x in self.xs:
                yield x, y

    def __len__(self) -> int:
        return len(self.xs) * len(self.ys)

    @property
    def span_x(self) -> tuple[int, int]:
        """First column and width of the band of pixels that the windows of one row cover."""
        return self.xs[0], self.xs[-1] + self.window - self.xs[0]


def window_grid(width: int, height: int, window: int, overlap: float = 0.5,
                anchor: tuple[int, int] = (0, 0)) -> WindowGrid:
    """Windows of ``window`` pixels overlapping by ``overlap`` that cover a width x height raster.

    ``anchor`` is the raster's pixel offset from the map origin (see module docstring).
    """
    if window < 1 or width < 1 or height < 1:
        raise ValueError("window and raster size must be positive")
    if not 0.0 <= overlap < 1.0:
        raise ValueError("overlap must be in [0, 1)")
    stride = window_stride(window, overlap)
    return WindowGrid(tuple(axis_starts(width, window, stride, anchor[0])),
                      tuple(axis_starts(height, window, stride, anchor[1])), window, stride)
