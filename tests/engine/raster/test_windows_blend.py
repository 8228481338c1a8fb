"""Window grid and strip blending, against direct full-array references."""

import numpy as np
import pytest

from mobanet.raster.blend import StripBlender, gaussian_weights
from mobanet.raster.windows import window_grid


@pytest.mark.parametrize("width,height,window,overlap,anchor", [
    (300, 170, 56, 0.5, (0, 0)), (300, 170, 56, 0.5, (1_000_037, -20_000_011)), (40, 30, 56, 0.5, (3, 5)),
    (97, 211, 28, 0.0, (13, 0)), (500, 64, 112, 0.75, (7, 9)), (56, 56, 56, 0.5, (0, 0))])
def test_grid_covers_the_raster(width, height, window, overlap, anchor):
    grid = window_grid(width, height, window, overlap, anchor)
    covered = np.zeros((height, width), int)
    for x, y in grid:
        assert x + window > 0 and y + window > 0 and x < width and y < height  # every window touches the raster
        covered[max(y, 0):y + window, max(x, 0):x + window] += 1
    assert covered.min() >= 1
    assert list(grid) == [(x, y) for y in grid.ys for x in grid.xs]  # row-major
    assert all((x + anchor[0]) % grid.stride == 0 for x in grid.xs)  # on the map-anchored lattice
    assert all((y + anchor[1]) % grid.stride == 0 for y in grid.ys)
    if overlap == 0.5:
        assert covered[:, window:-window].min() >= 2 if width > 2 * window else True


def test_cropped_raster_gets_windows_at_the_same_ground_places():
    full = window_grid(300, 300, 56, 0.5, anchor=(1_000_000, -10_000_000))
    crop = window_grid(263, 263, 56, 0.5, anchor=(1_000_037, -9_999_963))
    full_starts = {(x, y) for x, y in full}
    assert {(x + 37, y + 37) for x, y in crop} <= full_starts


def test_gaussian_weights_are_smooth_and_positive():
    weights = gaussian_weights(56)
    assert weights.shape == (56, 56) and weights.dtype == np.float32
    assert np.isclose(weights.max(), 1.0) and weights.min() >= 1e-3
    assert np.allclose(weights, weights.T) and np.allclose(weights, weights[::-1, ::-1])
    assert weights[28, 28] > weights[28, 10] > weights[28, 0]


def _blend(blender, grid, field_of, valid_of, height, width, skip=()):
    blocks = []
    for x, y in grid:
        if (x, y) in skip:
            continue
        blocks += blender.add(x, y, field_of(x, y), valid_of(x, y))
    blocks += blender.finish()
    assert [b.y for b in blocks] == list(np.cumsum([0] + [b.classes.shape[0] for b in blocks[:-1]]))
    classes = np.concatenate([b.classes for b in blocks])
    confidence = np.concatenate([b.confidence for b in blocks])
    assert classes.shape == (height, width)
    return classes, confidence


def test_blending_a_constant_logit_field_is_exact():
    height, width, window, k = 130, 170, 28, 6
    logits = np.array([0.3, -1.0, 2.5, 0.0, 1.2, -0.4], np.float32)
    grid = window_grid(width, height, window, 0.5, anchor=(5, 11))
    blender = StripBlender(k, width, height, window, *grid.span_x)
    constant = np.broadcast_to(logits[:, None, None], (k, window, window))
    classes, confidence = _blend(blender, grid, lambda x, y: constant, lambda x, y: np.ones((window, window), bool),
                                 height, width)
    expected = np.exp(logits - logits.max()).sum() ** -1
    assert (classes == 2).all()
    assert np.abs(confidence - expected).max() < 1e-6


def test_strip_blending_matches_a_full_array_reference():
    """Rolling strips (with a skipped row of windows and nodata) give the same result as one big accumulator."""
    rng = np.random.default_rng(1)
    height, width, window, k = 150, 120, 28, 4
    grid = window_grid(width, height, window, 0.5, anchor=(3, 7))
    weights = gaussian_weights(window)
    field = {pos: rng.normal(size=(k, window, window)).astype(np.float32) for pos in grid}
    invalid = np.zeros((height, width), bool)
    invalid[40:60, 10:50] = True
    skip_row = grid.ys[4]

    def valid_of(x, y):
        pad = np.ones((window, window), bool)
        inside = invalid[max(y, 0):y + window, max(x, 0):x + window]
        pad[max(-y, 0):max(-y, 0) + inside.shape[0], max(-x, 0):max(-x, 0) + inside.shape[1]] = ~inside
        return pad

    skip = {(x, skip_row) for x in grid.xs}
    blender = StripBlender(k, width, height, window, *grid.span_x)
    classes, _ = _blend(blender, grid, lambda x, y: field[(x, y)], valid_of, height, width, skip)

    total = np.zeros((k, height + 2 * window, width + 2 * window))
    weight = np.zeros((height + 2 * window, width + 2 * window))
    for (x, y), logits in field.items():
        if (x, y) in skip:
            continue
        total[:, y + window:y + 2 * window, x + window:x + 2 * window] += logits * weights
        weight[y + window:y + 2 * window, x + window:x + 2 * window] += weights
    reference = np.argmax(total[:, window:-window, window:-window], axis=0)
    reference[invalid | (weight[window:-window, window:-window] == 0)] = 255
    assert (classes == reference).all()
