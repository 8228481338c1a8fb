"""Tiling plans: the margin plan's windows tile the raster with their centres, blend to exactly one prediction per
pixel, sit on the map-anchored lattice, and reach `segment` and the CLI; bad settings are one clear error."""

import json
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from mobanet.errors import InputError
from mobanet.raster import segment
from mobanet.raster.blend import StripBlender
from mobanet.raster.tiling import DEFAULT_PLAN, MarginPlan, OverlapPlan, tiling_plan

from .conftest import ORIGIN, synthetic_pair, write_raster


@pytest.mark.parametrize("width,height,window,margin,anchor", [
    (300, 170, 56, 14, (0, 0)), (300, 170, 56, 7, (1_000_037, -20_000_011)), (40, 30, 56, 21, (3, 5)),
    (97, 211, 28, 0, (13, 0)), (500, 64, 112, 28, (7, 9)), (56, 56, 56, 27, (0, 0))])
def test_margin_plan_centres_cover_every_pixel_exactly_once(width, height, window, margin, anchor):
    plan = MarginPlan(margin)
    grid = plan.grid(width, height, window, anchor)
    weights = plan.weights(window)
    stride = window - 2 * margin
    assert grid.stride == stride and grid.window == window
    assert weights.sum() == stride * stride and set(np.unique(weights)) <= {0.0, 1.0}
    counted = np.zeros((height + 2 * window, width + 2 * window), np.float32)
    for x, y in grid:
        counted[y + window:y + 2 * window, x + window:x + 2 * window] += weights
        # every window's centre touches the raster: no window is predicted for its margin alone
        assert x + margin + stride > 0 and y + margin + stride > 0 and x + margin < width and y + margin < height
    assert (counted[window:window + height, window:window + width] == 1).all()
    assert list(grid) == [(x, y) for y in grid.ys for x in grid.xs]
    assert all((x + margin + anchor[0]) % stride == 0 for x in grid.xs)  # centres on the anchored lattice
    assert all((y + margin + anchor[1]) % stride == 0 for y in grid.ys)


def test_margin_plan_puts_windows_at_the_same_ground_places_after_a_crop():
    plan = MarginPlan(28)
    full = plan.grid(300, 300, 112, anchor=(1_000_000, -10_000_000))
    crop = plan.grid(263, 263, 112, anchor=(1_000_037, -9_999_963))
    assert {(x + 37, y + 37) for x, y in crop} <= set(full)


def test_margin_plan_blends_to_the_centre_of_the_one_window_covering_each_pixel():
    rng = np.random.default_rng(3)
    height, width, window, margin, k = 150, 130, 42, 7, 5
    plan = MarginPlan(margin)
    grid = plan.grid(width, height, window, anchor=(5, 2))
    blender = StripBlender(k, width, height, window, *grid.span_x, weights=plan.weights(window))
    field = {pos: rng.normal(size=(k, window, window)).astype(np.float32) for pos in grid}
    blocks = []
    for x, y in grid:
        blocks += blender.add(x, y, field[(x, y)], np.ones((window, window), bool))
    blocks += blender.finish()
    classes = np.concatenate([b.classes for b in blocks])
    confidence = np.concatenate([b.confidence for b in blocks])
    expected = np.full((height, width), 255, np.uint8)
    top = np.zeros((height, width), np.float32)
    for (x, y), logits in field.items():  # each window writes its centre, clipped to the raster
        centre = logits[:, margin:window - margin, margin:window - margin]
        y0, x0 = y + margin, x + margin
        rows = slice(max(y0, 0), min(y0 + centre.shape[1], height))
        cols = slice(max(x0, 0), min(x0 + centre.shape[2], width))
        part = centre[:, rows.start - y0:rows.stop - y0, cols.start - x0:cols.stop - x0]
        expected[rows, cols] = part.argmax(0)
        probabilities = np.exp(part - part.max(0)) / np.exp(part - part.max(0)).sum(0)
        top[rows, cols] = probabilities.max(0)
    assert (classes == expected).all()
    assert np.allclose(confidence, top, atol=1e-6)


def test_overlap_plan_is_the_gaussian_blend_of_the_window_grid():
    plan = OverlapPlan(0.25)
    grid = plan.grid(300, 200, 56, anchor=(3, 4))
    assert grid.stride == 42 and plan.weights(56).min() > 0
    assert plan.summary() == {"overlap": 0.25, "margin": None}
    assert MarginPlan(14).summary() == {"overlap": None, "margin": 14}


@pytest.mark.parametrize("overlap,margin,words", [
    (1.0, None, ["--overlap 1.0", "[0, 1)"]), (-0.1, None, ["--overlap -0.1"]),
    (None, -3, ["--margin -3", "0 or more"]), (0.5, 14, ["--overlap and --margin", "only one"])])
def test_bad_tiling_options_are_one_clear_error(overlap, margin, words):
    with pytest.raises(InputError) as error:
        tiling_plan(overlap, margin)
    assert all(word in str(error.value) for word in words), error.value


def test_a_margin_that_leaves_no_centre_is_refused_before_any_output(tmp_path, tiny_model):
    optical, dsm = synthetic_pair(80)
    o, d = write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm)
    with pytest.raises(InputError) as error:
        segment(o, d, tmp_path / "out.tif", model=tiny_model, margin=28)  # the model's windows are 56 px
    assert "--margin 28 px leaves nothing of a 56 px window" in str(error.value) and "below 28 px" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tif", "o.tif"]


def test_no_option_means_the_default_plan():
    assert tiling_plan() is DEFAULT_PLAN


def test_segment_with_a_margin_predicts_each_pixel_once(tmp_path, tiny_model):
    optical, dsm = synthetic_pair(200)
    o, d = write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm)
    result = segment(o, d, tmp_path / "margin.tif", model=tiny_model, margin=7)
    expected = MarginPlan(7).grid(200, 200, 56, anchor=(round(ORIGIN[0] / 0.5), round(ORIGIN[1] / -0.5)))
    assert result["margin"] == 7 and result["overlap"] is None
    assert result["windows"] == len(expected) == len(expected.xs) * len(expected.ys)
    assert len(expected.xs) in (5, 6)  # 42 px centres over 200 px
    classes = gdal.Open(str(tmp_path / "margin.tif")).ReadAsArray()
    assert (classes < 6).all()
    blended = segment(o, d, tmp_path / "overlap.tif", model=tiny_model, overlap=0.5)  # windows every 28 px
    assert blended["overlap"] == 0.5 and blended["margin"] is None and blended["windows"] > result["windows"]


def test_margin_plan_skips_windows_whose_centre_has_no_data(tmp_path, tiny_model):
    optical, dsm = synthetic_pair(168)
    optical[:, :, :84] = 0  # the left half is nodata: windows reaching into it only with their margin are skipped
    o, d = write_raster(tmp_path / "o.tif", optical, nodata=0), write_raster(tmp_path / "d.tif", dsm)
    result = segment(o, d, tmp_path / "out.tif", model=tiny_model, margin=14)
    classes = gdal.Open(str(tmp_path / "out.tif")).ReadAsArray()
    assert (classes[:, :84] == 255).all() and (classes[:, 84:] < 6).all()
    grid = MarginPlan(14).grid(168, 168, 56, anchor=(round(ORIGIN[0] / 0.5), round(ORIGIN[1] / -0.5)))
    wanted = sum(1 for x, _ in grid if x + 14 + 28 > 84)  # centre reaches a valid column
    assert result["windows_predicted"] == wanted < len(grid)


def test_cli_margin_option_and_its_exclusion_with_overlap(tmp_path, tiny_model):
    optical, dsm = synthetic_pair(90)
    o, d = write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm)
    base = [sys.executable, "-m", "mobanet", "segment", "--json-progress", "--optical", str(o), "--dsm", str(d),
            "--model", str(tiny_model), "--device", "cpu"]
    done = subprocess.run([*base, "--output", str(tmp_path / "m.tif"), "--margin", "7"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["event"] == "result" and result["margin"] == 7 and result["overlap"] is None
    both = subprocess.run([*base, "--output", str(tmp_path / "b.tif"), "--margin", "7", "--overlap", "0.5"],
                          capture_output=True, text=True, timeout=120)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr and "Traceback" not in both.stderr
    assert not (tmp_path / "b.tif").exists()
    helped = subprocess.run([*base[:4], "--help"], capture_output=True, text=True, timeout=120)
    assert "--margin PX" in helped.stdout and "--overlap F" in helped.stdout
    # the help states the default plan and why: change it with DEFAULT_PLAN (and the QGIS help's DEFAULT_TILING)
    words = " ".join(helped.stdout.split())
    assert DEFAULT_PLAN == OverlapPlan(0.5) and "Default (neither option): overlap 0.5" in words
    assert "99.5 % of pixels" in words
