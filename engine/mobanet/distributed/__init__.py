"""Distributed segmentation on Ray: the scene as tiles on many workers, assembled into the single-process result.

plan.py     tiles with the halo of windows that makes each equal to the whole-scene run
store.py    finished tiles on disk, keyed by what determines them (resume after a crash)
worker.py   the Ray actor: model loaded once, tiles predicted into the store
cluster.py  starting (local, 127.0.0.1) or joining (HOST:PORT) Ray; Ray stays an optional dependency
driver.py   handing out tiles, retrying those of dead workers, progress and cancel

`mobanet.raster.segment` calls `run_tiles` for ``--ray`` and writes the outputs
from the returned store with the same code as a single-process run.
"""

from mobanet.distributed.driver import TileRun, run_tiles
from mobanet.distributed.plan import DEFAULT_TILE_SIZE, Tile, predict_tile, tile_plan
from mobanet.distributed.worker import TileJob

__all__ = ["DEFAULT_TILE_SIZE", "Tile", "TileJob", "TileRun", "predict_tile", "run_tiles", "tile_plan"]
