"""The tile plan: tiles cover the scene once, carry the windows that touch them, and stitch to the whole-scene run."""

import numpy as np
import pytest
import torch

from mobanet.distributed.plan import predict_tile, tile_plan
from mobanet.errors import MobanetError
from mobanet.modelfile import load_model
from mobanet.raster import open_scene, predict_array
from mobanet.raster.predict import WindowPredictor
from mobanet.raster.tiling import MarginPlan, OverlapPlan

from ..raster.conftest import write_raster
from .conftest import WINDOW, write_mask


@pytest.mark.parametrize(("width", "height", "tile_size", "plan", "anchor"), [
    (300, 300, 112, OverlapPlan(0.5), (7, 3)), (300, 170, 56, OverlapPlan(0.5), (0, 0)),
    (301, 97, 100, OverlapPlan(0.25), (13, 1)), (40, 30, 56, OverlapPlan(0.5), (5, 5)),
    (1000, 560, 512, OverlapPlan(0.0), (3, 0)), (250, 250, 240, OverlapPlan(0.5), (0, 0)),
    (300, 300, 112, MarginPlan(7), (7, 3)), (301, 97, 100, MarginPlan(14), (13, 1)),
])
def test_tiles_cover_the_scene_once_with_every_touching_window(width, height, tile_size, plan, anchor):
    grid = plan.grid(width, height, WINDOW, anchor=anchor)
    tiles = tile_plan(width, height, grid, tile_size)
    owner = np.zeros((height, width), int)
    for tile in tiles:
        owner[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width] += 1
        # a tile is at least one window wide unless it spans the whole axis (edge mirroring stays the same)
        assert tile.width >= WINDOW or tile.width == width
        assert tile.height >= WINDOW or tile.height == height
        assert tile.width <= tile_size + WINDOW and tile.height <= tile_size + WINDOW
        assert tile.xs == tuple(x for x in grid.xs if x < tile.x + tile.width and x + WINDOW > tile.x)
        assert tile.ys == tuple(y for y in grid.ys if y < tile.y + tile.height and y + WINDOW > tile.y)
        bx, by, bw, bh = tile.read_block(WINDOW, width, height)
        assert bx <= tile.x and by <= tile.y and bx + bw >= tile.x + tile.width and by + bh >= tile.y + tile.height
    assert (owner == 1).all()
    assert [(t.y, t.x) for t in tiles] == sorted((t.y, t.x) for t in tiles)  # row-major
    assert len({t.name for t in tiles}) == len(tiles)


def test_tile_smaller_than_the_window_is_refused():
    grid = OverlapPlan(0.5).grid(300, 300, WINDOW)
    with pytest.raises(MobanetError, match="--tile-size 40 is smaller than the model's window"):
        tile_plan(300, 300, grid, 40)


@pytest.mark.parametrize(("tile_size", "plan", "mask"), [
    (112, OverlapPlan(0.5), False), (56, OverlapPlan(0.5), True), (130, OverlapPlan(0.25), False),
    (400, OverlapPlan(0.5), False), (70, OverlapPlan(0.0), True), (112, MarginPlan(7), False),
    (70, MarginPlan(14), True),
])
def test_stitched_tiles_equal_the_whole_scene_run(scene_300, model_56, tmp_path, tile_size, plan, mask):
    """Whatever the tiling plan (overlap or margin), the tiles together are the single-process run."""
    network, card = load_model(model_56)
    mask_path = None
    if mask:  # a polygon mask: pixels outside are nodata in both runs
        mask_path = write_mask(tmp_path / "mask.gpkg", "POLYGON ((500010 4999990, 500120 4999995, 500100 4999880, "
                                                      "500020 4999900, 500010 4999990))")
    scene = open_scene(*scene_300, card, mask=mask_path)
    reference, reference_confidence = predict_array(network, card, scene, WINDOW, plan, 4, "cpu")

    predictor = WindowPredictor(network, torch.device("cpu"), 4)
    grid = plan.grid(scene.width, scene.height, WINDOW, anchor=scene.anchor)
    classes = np.full_like(reference, 77)
    confidence = np.zeros_like(reference_confidence)
    for tile in tile_plan(scene.width, scene.height, grid, tile_size):
        block = predict_tile(predictor, card.num_classes, scene, tile, WINDOW, plan, 3, True)
        rows, cols = slice(block.y, block.y + tile.height), slice(block.x, block.x + tile.width)
        classes[rows, cols], confidence[rows, cols] = block.classes, block.confidence
    assert (classes != 77).all()
    assert (classes == reference).mean() >= 0.9999  # only float summation order may differ
    np.testing.assert_allclose(confidence, reference_confidence, atol=1e-5)
    if mask:
        assert (reference == 255).mean() > 0.3  # the mask did cut something away


def test_a_cropped_file_gets_the_same_tiles_where_they_overlap(scene_300, model_56, tmp_path):
    """Tiles use the map-anchored window grid: a file cropped by a few pixels predicts the same classes."""
    from osgeo import gdal

    network, card = load_model(model_56)
    full = open_scene(*scene_300, card)
    optical = gdal.Open(str(scene_300[0])).ReadAsArray()
    dsm = gdal.Open(str(scene_300[1])).ReadAsArray()
    gt = list(gdal.Open(str(scene_300[0])).GetGeoTransform())
    offset = 2 * (WINDOW // 2) + 5  # not a multiple of the stride of the file's own grid
    gt[0] += offset * gt[1]
    gt[3] += offset * gt[5]
    cropped = open_scene(write_raster(tmp_path / "o.tif", optical[:, offset:, offset:], tuple(gt), nodata=0),
                         write_raster(tmp_path / "d.tif", dsm[offset:, offset:], tuple(gt)), card)
    # same statistics as the full file, so that only the tiling differs
    cropped.optical_normalizer, cropped.dsm_normalizer = full.optical_normalizer, full.dsm_normalizer
    predictor = WindowPredictor(network, torch.device("cpu"), 4)

    def stitched(scene):
        grid = OverlapPlan(0.5).grid(scene.width, scene.height, WINDOW, anchor=scene.anchor)
        out = np.zeros((scene.height, scene.width), np.uint8)
        for tile in tile_plan(scene.width, scene.height, grid, 112):
            block = predict_tile(predictor, card.num_classes, scene, tile, WINDOW, OverlapPlan(0.5), 4, False)
            out[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width] = block.classes
        return out

    inner = slice(offset + WINDOW, -WINDOW)  # away from the cropped file's edges (mirrored there)
    assert (stitched(full)[inner, inner] == stitched(cropped)[WINDOW:-WINDOW, WINDOW:-WINDOW]).mean() >= 0.9999
