"""Tiling plans: where the windows go and how much of each window counts.

A plan turns a raster size and a window side into a `WindowGrid` and a
per-pixel weight for every window's logits (`StripBlender` sums weighted
logits and picks the top class). Two plans are offered:

- `OverlapPlan`: windows overlap by a fraction of their side and their logits
  are blended with a Gaussian bump (`gaussian_weights`), so seams fade out.
  Overlap 0.5 predicts each pixel about four times.
- `MarginPlan`: every window keeps only its centre and throws away a fixed
  ``margin`` of pixels on each side, which served as context; the centres tile
  the plane exactly (stride = window - 2 x margin), so each pixel is predicted
  once, with at least ``margin`` pixels of context around it.

Both lay their windows on the map-anchored lattice of `mobanet.raster.windows`,
so a cropped raster gets windows at the same ground places. Which plan is the
default, and why, is measured in benchmarks/results/tiling.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mobanet.errors import InputError
from mobanet.raster.blend import gaussian_weights
from mobanet.raster.windows import WindowGrid, axis_starts, window_grid, window_stride
from mobanet.wording import option


class TilingPlan(Protocol):
    """What `predict_blocks` needs from a plan."""

    def grid(self, width: int, height: int, window: int, anchor: tuple[int, int] = (0, 0)) -> WindowGrid:
        """The windows covering a width x height raster (row-major)."""

    def stride(self, window: int) -> int:
        """Distance between neighbouring windows."""

    def weights(self, window: int) -> np.ndarray:
        """float32 [window, window] weight of each window pixel's logits; 0 = not used."""

    def check_window(self, window: int) -> None:
        """Raise `InputError` if the plan cannot lay out windows of this side."""

    def summary(self) -> dict[str, Any]:
        """The plan as reported in a run's result (keys ``overlap`` and ``margin``)."""


@dataclass(frozen=True)
class OverlapPlan:
    """Windows overlapping by ``overlap`` (a fraction in [0, 1)), blended with a Gaussian bump."""

    overlap: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap < 1.0:
            raise InputError(f"{option('--overlap')} {self.overlap} is out of range; use a fraction in [0, 1), "
                             "e.g. 0.5.")

    def grid(self, width: int, height: int, window: int, anchor: tuple[int, int] = (0, 0)) -> WindowGrid:
        return window_grid(width, height, window, self.overlap, anchor)

    def stride(self, window: int) -> int:
        return window_stride(window, self.overlap)

    def weights(self, window: int) -> np.ndarray:
        return gaussian_weights(window)

    def check_window(self, window: int) -> None:
        pass  # any window can overlap by a fraction

    def summary(self) -> dict[str, Any]:
        return {"overlap": self.overlap, "margin": None}


@dataclass(frozen=True)
class MarginPlan:
    """Each window keeps its centre and drops ``margin`` pixels of context on every side; centres tile exactly."""

    margin: int

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise InputError(f"{option('--margin')} {self.margin} px is negative; use 0 or more pixels of context, "
                             "e.g. 28.")

    def stride(self, window: int) -> int:
        """Side of the kept centre, which is also the distance between windows."""
        stride = window - 2 * self.margin
        if stride < 1:
            raise InputError(f"{option('--margin')} {self.margin} px leaves nothing of a {window} px window; set "
                             f"{option('--margin')} below {(window + 1) // 2} px (e.g. {window // 8}) or a larger "
                             f"{option('--window')}.")
        return stride

    def grid(self, width: int, height: int, window: int, anchor: tuple[int, int] = (0, 0)) -> WindowGrid:
        if window < 1 or width < 1 or height < 1:
            raise ValueError("window and raster size must be positive")
        stride = self.stride(window)
        # The centres form the anchored lattice of a zero-overlap grid; each window reaches `margin` further out.
        xs = tuple(x - self.margin for x in axis_starts(width, stride, stride, anchor[0]))
        ys = tuple(y - self.margin for y in axis_starts(height, stride, stride, anchor[1]))
        return WindowGrid(xs, ys, window, stride)

    def check_window(self, window: int) -> None:
        self.stride(window)

    def weights(self, window: int) -> np.ndarray:
        weights = np.zeros((window, window), np.float32)
        inner = slice(self.margin, self.margin + self.stride(window))
        weights[inner, inner] = 1.0
        return weights

    def summary(self) -> dict[str, Any]:
        return {"overlap": None, "margin": self.margin}


DEFAULT_PLAN: TilingPlan = OverlapPlan(0.5)


def tiling_plan(overlap: float | None = None, margin: int | None = None) -> TilingPlan:
    """The plan that ``--overlap`` / ``--margin`` ask for; neither gives `DEFAULT_PLAN`."""
    if overlap is not None and margin is not None:
        raise InputError(f"{option('--overlap')} and {option('--margin')} are two ways to lay out the windows; "
                         "give only one of them.")
    if overlap is not None:
        return OverlapPlan(float(overlap))
    if margin is not None:
        return MarginPlan(int(margin))
    return DEFAULT_PLAN
