"""Random training windows: where to cut them, how to augment them, all reproducible.

Each batch element is one square window from one training scene:

1. a scene is drawn with probability proportional to its labelled pixels;
2. a position is drawn uniformly in the scene's training region, or, with
   class-balanced sampling, around a random pixel of a class drawn uniformly
   among the classes present (rare classes such as cars are seen as often as
   roads);
3. positions are redrawn (a few times) until at least ``min_labelled`` of the
   window is labelled; the best try is kept otherwise;
4. the window is read through `Scene.read` (the same normalisation as
   ``mobanet segment``), pixels that are invalid or outside the region become
   ignore (255), and one of the 8 flips/90-degree rotations is applied to
   optical, DSM and labels alike.

The generator is numpy's PCG64 seeded with ``(seed, rank)``: every DDP rank
draws its own windows, and the state is JSON (stored for exact resuming).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mobanet.classes import IGNORE_INDEX

MAX_TRIES = 20  # positions tried per window before settling for the best labelled share
CLASS_GRID = 4  # class-balanced sampling indexes every 4th pixel per axis (memory stays small)


@dataclass
class Region:
    """A pixel rectangle of a scene: x, y (top-left) and width, height."""

    x: int
    y: int
    width: int
    height: int

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


def holdout_regions(width: int, height: int, fraction: float) -> tuple[Region, Region | None]:
    """Split a scene into a training region and a validation strip (its right-hand ``fraction``).

    A spatial hold-out: neighbouring pixels are strongly correlated, so random
    pixels or windows would leak training data into validation; one contiguous
    strip per scene does not (only its border touches training windows).
    """
    if fraction <= 0:
        return Region(0, 0, width, height), None
    strip = min(width - 1, max(1, round(width * fraction)))
    return Region(0, 0, width - strip, height), Region(width - strip, 0, strip, height)


@dataclass
class TrainingScene:
    """One scene ready for sampling: its reader, its labels on the scene grid and where windows may go."""

    scene: Any  # mobanet.raster.Scene
    labels: np.ndarray  # uint8 [H, W] on the scene grid, IGNORE_INDEX where unlabelled
    region: Region
    name: str

    def labelled_pixels(self) -> int:
        return int(np.count_nonzero(self.labels[self.region.slices()] != IGNORE_INDEX))


def augment(optical: np.ndarray, dsm: np.ndarray, labels: np.ndarray, rotation: int,
            flip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate by ``rotation`` quarter turns, then mirror left-right if ``flip``: the same for all three arrays."""
    arrays = [np.rot90(a, rotation, axes=(-2, -1)) for a in (optical, dsm, labels)]
    if flip:
        arrays = [a[..., ::-1] for a in arrays]
    return tuple(np.ascontiguousarray(a) for a in arrays)  # type: ignore[return-value]


class WindowSampler:
    """Batches of augmented training windows (see module docstring)."""

    def __init__(self, scenes: list[TrainingScene], window: int, min_labelled: float = 0.5,
                 class_balanced: bool = False, seed: int = 0, rank: int = 0):
        self.scenes = scenes
        self.window = window
        self.min_labelled = min_labelled
        self.class_balanced = class_balanced
        self.rng = np.random.default_rng([seed, rank])
        counts = np.array([s.labelled_pixels() for s in scenes], dtype=np.float64)
        self.scene_weights = counts / counts.sum()
        self.class_pixels = [self._class_pixels(s) for s in scenes] if class_balanced else []

    @staticmethod
    def _class_pixels(item: TrainingScene) -> dict[int, np.ndarray]:
        """Row/column of every CLASS_GRID-th labelled pixel of the training region, per class."""
        rows, cols = item.region.slices()
        grid = item.labels[rows, cols][::CLASS_GRID, ::CLASS_GRID]
        found = {}
        for value in np.unique(grid):
            if value == IGNORE_INDEX:
                continue
            ys, xs = np.nonzero(grid == value)
            found[int(value)] = np.stack([ys * CLASS_GRID + item.region.y, xs * CLASS_GRID + item.region.x], 1)
        return found

    # -- positions --------------------------------------------------------------------
    def _start_range(self, start: int, length: int) -> tuple[int, int]:
        """Lowest and highest window start along one axis of a region (the region's start when too short)."""
        return start, start + max(0, length - self.window)

    def _uniform_position(self, item: TrainingScene) -> tuple[int, int]:
        x0, x1 = self._start_range(item.region.x, item.region.width)
        y0, y1 = self._start_range(item.region.y, item.region.height)
        return int(self.rng.integers(x0, x1 + 1)), int(self.rng.integers(y0, y1 + 1))

    def _balanced_position(self, index: int) -> tuple[int, int]:
        item, pixels = self.scenes[index], self.class_pixels[index]
        chosen = pixels[list(pixels)[int(self.rng.integers(len(pixels)))]]
        row, col = chosen[int(self.rng.integers(len(chosen)))]
        x0, x1 = self._start_range(item.region.x, item.region.width)
        y0, y1 = self._start_range(item.region.y, item.region.height)
        x = int(np.clip(col - self.rng.integers(self.window), x0, x1))
        y = int(np.clip(row - self.rng.integers(self.window), y0, y1))
        return x, y

    def _window_labels(self, item: TrainingScene, x: int, y: int) -> np.ndarray:
        """Labels of the window at (x, y), IGNORE_INDEX outside the training region."""
        out = np.full((self.window, self.window), IGNORE_INDEX, dtype=np.uint8)
        region = item.region
        left, top = max(x, region.x), max(y, region.y)
        right = min(x + self.window, region.x + region.width)
        bottom = min(y + self.window, region.y + region.height)
        if right > left and bottom > top:
            out[top - y:bottom - y, left - x:right - x] = item.labels[top:bottom, left:right]
        return out

    def draw_position(self) -> tuple[int, int, int, np.ndarray]:
        """(scene index, x, y, window labels) of one window with enough labelled pixels, if one is found."""
        index = int(self.rng.choice(len(self.scenes), p=self.scene_weights))
        item = self.scenes[index]
        best = None
        for _ in range(MAX_TRIES):
            x, y = self._balanced_position(index) if self.class_balanced else self._uniform_position(item)
            labels = self._window_labels(item, x, y)
            share = np.count_nonzero(labels != IGNORE_INDEX) / labels.size
            if best is None or share > best[0]:
                best = (share, x, y, labels)
            if share >= self.min_labelled:
                break
        return index, best[1], best[2], best[3]

    # -- batches --------------------------------------------------------------------
    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One augmented window: optical f32 [3,w,w], DSM f32 [1,w,w], labels uint8 [w,w]."""
        index, x, y, labels = self.draw_position()
        optical, dsm, valid = self.scenes[index].scene.read(x, y, self.window, self.window)
        labels = np.where(valid, labels, IGNORE_INDEX).astype(np.uint8)
        rotation, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
        return augment(optical, dsm, labels, rotation, flip)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``size`` windows stacked: optical [B,3,w,w], DSM [B,1,w,w], labels int64 [B,w,w] (CPU tensors)."""
        samples = [self.sample() for _ in range(size)]
        optical, dsm, labels = (np.stack(parts) for parts in zip(*samples, strict=True))
        return torch.from_numpy(optical), torch.from_numpy(dsm), torch.from_numpy(labels.astype(np.int64))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
