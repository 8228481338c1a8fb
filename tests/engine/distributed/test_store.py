"""The tile store: keyed by what determines the tiles, atomic tiles, damaged tiles recomputed."""

import os

import numpy as np
import pytest

from mobanet.distributed.plan import Tile
from mobanet.distributed.store import TileStore, file_identity, run_key, store_folder
from mobanet.errors import InputError
from mobanet.raster.blend import Block

TILE = Tile(112, 0, 76, 112, (84, 112, 140), (0, 28, 56, 84))


def _fields(tmp_path, **changes):
    fields = {"optical": file_identity(tmp_path / "o.tif"), "model_sha256": "ab" * 32, "overlap": 0.5,
              "margin": None, "window": None, "extent": None, "tile_size": 112}
    fields.update(changes)
    return fields


def test_the_key_changes_with_whatever_decides_the_tiles(tmp_path):
    (tmp_path / "o.tif").write_bytes(b"x" * 10)
    same = run_key(_fields(tmp_path))
    assert run_key(_fields(tmp_path)) == same  # the same command finds its tiles again
    changed = {run_key(_fields(tmp_path, overlap=0.25)), run_key(_fields(tmp_path, model_sha256="cd" * 32)),
               run_key(_fields(tmp_path, overlap=None, margin=7)),
               run_key(_fields(tmp_path, extent=(1, 2, 3, 4))), run_key(_fields(tmp_path, tile_size=224))}
    os.utime(tmp_path / "o.tif", ns=(1, 1))  # an input rewritten in place
    changed.add(run_key(_fields(tmp_path)))
    assert same not in changed and len(changed) == 6
    folder = store_folder(tmp_path / "classes.tif", same)
    assert folder.parent == tmp_path and folder.name == f".classes.tif.tiles-{same}"


def test_tiles_are_written_atomically_and_read_back(tmp_path):
    store = TileStore(tmp_path / ".out.tif.tiles-0123")
    store.folder.mkdir()
    classes = np.arange(112 * 76, dtype=np.uint8).reshape(112, 76)
    confidence = np.full((112, 76), 0.5, np.float32)
    (store.folder / f".{TILE.name}.partial-1234abcd.npz").write_bytes(b"half a tile")  # a killed worker's
    assert store.finished([TILE]) == set() and store.tile_count() == 0  # half a tile is no tile
    store.save(Block(TILE.y, classes, confidence, TILE.x), TILE)
    assert store.finished([TILE]) == {TILE.name} and store.tile_count() == 1
    store.remove_partials()
    assert sorted(p.name for p in store.folder.iterdir()) == [f"{TILE.name}.npz"]
    block = store.load(TILE, with_confidence=True)
    assert (block.x, block.y) == (112, 0)
    np.testing.assert_array_equal(block.classes, classes)
    np.testing.assert_array_equal(block.confidence, confidence)


def test_a_damaged_tile_is_removed_with_a_message_to_rerun(tmp_path):
    store = TileStore(tmp_path / ".out.tif.tiles-0123")
    store.folder.mkdir()
    store.tile_path(TILE).write_bytes(b"not a numpy archive")
    with pytest.raises(InputError, match="unreadable.*run the same command again"):
        store.load(TILE, with_confidence=False)
    assert store.finished([TILE]) == set() and store.tile_count() == 0  # half a tile is no tile
    store.save(Block(0, np.zeros((5, 5), np.uint8), None, 0), TILE)  # a tile of the wrong size
    with pytest.raises(InputError, match="wrong size"):
        store.load(TILE, with_confidence=False)
    assert not store.tile_path(TILE).exists()


def test_only_stores_of_the_same_output_are_stale_siblings(tmp_path):
    ours = TileStore(store_folder(tmp_path / "a-b.tif", "1111"))
    older = TileStore(store_folder(tmp_path / "a-b.tif", "2222"))
    other_output = TileStore(store_folder(tmp_path / "a-b.tif2", "3333"))
    for store in (ours, older, other_output):
        store.folder.mkdir()
    assert ours.stale_siblings() == [older.folder]
