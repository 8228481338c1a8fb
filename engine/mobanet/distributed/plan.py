"""The tile plan: a scene cut into tiles that can be predicted apart and still equal the whole-scene run.

Tiles are blocks of the scene's pixel grid, ``tile_size`` pixels a side from
its top-left corner (a multiple of 512 keeps them on the output's GeoTIFF
blocks); the last tile of a row or column also takes a remainder narrower than
one window, so every tile is at least a window wide or spans the whole axis.

A tile is predicted with exactly the windows of the scene's map-anchored
window grid that touch it (the single-process run's tiling plan, overlap or
margin, `mobanet.raster.tiling`, with its window weights), read from the block
those windows cover (the halo, clipped to the scene). Every window that adds to one
of the tile's pixels in the single-process run is among them, and the blender
adds them in the same row-major order, so a tile's classes equal that run's;
only the model's float arithmetic on differently composed batches may differ.
At the scene border a window is padded by mirroring the strip of windows it
belongs to; a tile at least one window wide holds enough of that strip for the
mirror to be the same as in the whole-scene run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from mobanet.classes import IGNORE_INDEX
from mobanet.errors import InputError
from mobanet.progress import Progress
from mobanet.raster.blend import Block
from mobanet.raster.predict import RunStats, WindowPredictor, predict_blocks
from mobanet.raster.scene import Scene
from mobanet.raster.tiling import TilingPlan
from mobanet.raster.windows import WindowGrid
from mobanet.wording import option

DEFAULT_TILE_SIZE = 2048


@dataclass(frozen=True)
class Tile:
    """Scene pixels ``x .. x + width`` x ``y .. y + height`` and the window starts (scene pixels) that touch them."""

    x: int
    y: int
    width: int
    height: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]

    @property
    def name(self) -> str:
        """A file-name-safe id, unique within a plan."""
        return f"y{self.y:07d}_x{self.x:07d}"

    @property
    def windows(self) -> int:
        return len(self.xs) * len(self.ys)

    def read_block(self, window: int, scene_width: int, scene_height: int) -> tuple[int, int, int, int]:
        """The scene block (x, y, w, h) that the tile's windows cover, clipped to the scene: tile plus halo."""
        left, top = max(self.xs[0], 0), max(self.ys[0], 0)
        right, bottom = min(self.xs[-1] + window, scene_width), min(self.ys[-1] + window, scene_height)
        return left, top, right - left, bottom - top


def _spans(size: int, tile_size: int, window: int) -> list[tuple[int, int]]:
    """(start, length) of the tiles along one axis; a last remainder narrower than a window joins its neighbour."""
    spans = [(start, min(tile_size, size - start)) for start in range(0, size, tile_size)]
    if len(spans) > 1 and spans[-1][1] < window:
        (start, length), (_, rest) = spans[-2], spans.pop()
        spans[-1] = (start, length + rest)
    return spans


def _touching(starts: tuple[int, ...], window: int, first: int, length: int) -> tuple[int, ...]:
    return tuple(s for s in starts if s < first + length and s + window > first)


def check_tile_size(tile_size: int, window: int) -> None:
    if tile_size < window:
        raise InputError(f"{option('--tile-size')} {tile_size} is smaller than the model's window ({window} px); "
                         f"use at least {window}, e.g. {option('--tile-size')} {DEFAULT_TILE_SIZE}.")


def tile_plan(width: int, height: int, grid: WindowGrid, tile_size: int) -> list[Tile]:
    """Tiles of a width x height scene in row-major order, each with the windows of ``grid`` that touch it."""
    check_tile_size(tile_size, grid.window)
    tiles = []
    for y, h in _spans(height, tile_size, grid.window):
        ys = _touching(grid.ys, grid.window, y, h)
        for x, w in _spans(width, tile_size, grid.window):
            tiles.append(Tile(x, y, w, h, _touching(grid.xs, grid.window, x, w), ys))
    return tiles


def predict_tile(predictor: WindowPredictor, num_classes: int, scene: Scene, tile: Tile, window: int,
                 plan: TilingPlan, batch_size: int, with_confidence: bool, progress: Progress | None = None,
                 stats: RunStats | None = None) -> Block:
    """The tile's classes (and confidence) as the whole-scene run computes them (see module docstring)."""
    bx, by, bw, bh = tile.read_block(window, scene.width, scene.height)
    view = scene.crop(bx, by, bw, bh)
    grid = WindowGrid(tuple(s - bx for s in tile.xs), tuple(s - by for s in tile.ys), window,
                      plan.stride(window))
    classes = np.full((tile.height, tile.width), IGNORE_INDEX, np.uint8)
    confidence = np.zeros((tile.height, tile.width), np.float32) if with_confidence else None
    columns = slice(tile.x - bx, tile.x - bx + tile.width)
    blocks = predict_blocks(predictor, num_classes, view, window, plan, batch_size, with_confidence, progress, stats,
                            grid=grid)
    with contextlib.closing(blocks):  # stops the reader thread at once on an error
        for block in blocks:
            top = max(by + block.y, tile.y)
            bottom = min(by + block.y + block.classes.shape[0], tile.y + tile.height)
            if bottom <= top:
                continue
            rows = slice(top - by - block.y, bottom - by - block.y)
            classes[top - tile.y: bottom - tile.y] = block.classes[rows, columns]
            if confidence is not None and block.confidence is not None:
                confidence[top - tile.y: bottom - tile.y] = block.confidence[rows, columns]
    return Block(tile.y, classes, confidence, tile.x)

