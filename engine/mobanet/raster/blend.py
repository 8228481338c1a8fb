"""Blending the logits of overlapping windows into one seamless map, strip by strip.

Each window's logits are weighted by a smooth bump (a Gaussian of sigma T/8
with a floor, as in nnU-Net): a window's centre, which saw the most context,
counts most; its border, which saw the least, counts little but never zero,
so every covered pixel has a defined value. The sum of weighted logits and of
weights is kept only for the rows the current row of windows touches; rows
that no later window can reach leave as classes and confidence, so memory
grows with the raster's width, never with its height.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobanet.classes import IGNORE_INDEX


def gaussian_weights(window: int, sigma_fraction: float = 1.0 / 8.0, floor: float = 1e-3) -> np.ndarray:
    """float32 [window, window] weights, 1 at the centre, at least ``floor`` at the corners."""
    centre = (window - 1) / 2.0
    axis = np.exp(-0.5 * ((np.arange(window) - centre) / (sigma_fraction * window)) ** 2)
    weights = np.outer(axis, axis)
    return np.maximum(weights / weights.max(), floor).astype(np.float32)


@dataclass
class Block:
    """Finished pixels ``y .. y + h`` x ``x .. x + w`` of the raster: classes (255 = nodata), top-class probability.

    Blocks from the blender span whole rows (x = 0); a tile of a distributed run is narrower (the tile store
    joins a row of tiles into whole rows before they are written).
    """

    y: int
    classes: np.ndarray  # uint8 [h, w]
    confidence: np.ndarray | None  # float32 [h, w], None when not asked for
    x: int = 0


class StripBlender:
    """Accumulates weighted window logits in a rolling strip one window tall.

    Windows must arrive in row-major order (as `WindowGrid` yields them);
    `add` returns the blocks of rows that became final, `finish` the rest.
    """

    def __init__(self, num_classes: int, width: int, height: int, window: int, x_origin: int, span: int,
                 with_confidence: bool = True, weights: np.ndarray | None = None):
        self.width, self.height, self.window = width, height, window
        self.x_origin = x_origin  # raster column of the strip's first column (<= 0)
        self.weights = gaussian_weights(window) if weights is None else weights
        self.with_confidence = with_confidence
        self.sum = np.zeros((num_classes, window, span), np.float32)
        self.weight = np.zeros((window, span), np.float32)
        self.valid = np.zeros((window, span), bool)
        self.top: int | None = None  # raster row of the strip's first row

    def add(self, x: int, y: int, logits: np.ndarray, valid: np.ndarray) -> list[Block]:
        """Add one window's logits [K, T, T] and validity [T, T] at raster position (x, y)."""
        finished = []
        if self.top is None:  # rows above the first window (all of its windows were skipped): nodata
            finished = self._empty_rows(0, y)
            self.top = y
        elif y > self.top:
            finished = self._advance(y)
        elif y < self.top:
            raise ValueError("windows must arrive in row-major order")
        rows = slice(y - self.top, y - self.top + self.window)
        cols = slice(x - self.x_origin, x - self.x_origin + self.window)
        self.sum[:, rows, cols] += logits * self.weights
        self.weight[rows, cols] += self.weights
        self.valid[rows, cols] |= valid
        return finished

    def finish(self) -> list[Block]:
        """The rows still held (call once, after the last window)."""
        if self.top is None:
            return self._empty_rows(0, self.height)
        blocks = self._advance(self.top + self.window)
        return blocks + self._empty_rows(self.top, self.height)

    # -- internals --------------------------------------------------------------
    def _advance(self, new_top: int) -> list[Block]:
        """Emit rows [top, new_top) and shift the strip so that it starts at ``new_top``."""
        assert self.top is not None
        held = min(new_top - self.top, self.window)
        blocks = [self._block(self.top, held)]
        blocks += self._empty_rows(self.top + held, new_top)  # rows no window reached (all nodata)
        for array in (self.sum, self.weight, self.valid):
            array[..., : self.window - held, :] = array[..., held:, :]
            array[..., self.window - held:, :] = 0
        self.top = new_top
        return [b for b in blocks if b.classes.shape[0]]

    def _block(self, top: int, rows: int) -> Block:
        """Classes and confidence of strip rows [0, rows), clipped to the raster."""
        first, last = max(top, 0), min(top + rows, self.height)
        if last <= first:
            return self._empty(first, 0)
        r = slice(first - top, last - top)
        c = slice(-self.x_origin, -self.x_origin + self.width)
        total = self.sum[:, r, c]
        weight = self.weight[r, c]
        valid = self.valid[r, c] & (weight > 0)
        classes = np.argmax(total, axis=0).astype(np.uint8)  # weight > 0 is a common factor
        classes[~valid] = IGNORE_INDEX
        confidence = None
        if self.with_confidence:
            logits = total / np.maximum(weight, 1e-12)
            top_logit = logits.max(axis=0)
            confidence = (1.0 / np.exp(logits - top_logit).sum(axis=0)).astype(np.float32)
            confidence[~valid] = 0.0
        return Block(first, classes, confidence)

    def _empty(self, y: int, rows: int) -> Block:
        classes = np.full((rows, self.width), IGNORE_INDEX, np.uint8)
        confidence = np.zeros((rows, self.width), np.float32) if self.with_confidence else None
        return Block(y, classes, confidence)

    def _empty_rows(self, start: int, stop: int) -> list[Block]:
        start, stop = max(start, 0), min(stop, self.height)
        return [self._empty(start, stop - start)] if stop > start else []
