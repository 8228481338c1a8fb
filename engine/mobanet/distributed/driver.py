"""The driver: plan the tiles, keep every worker busy, survive the loss of workers, resume from the store.

`run_tiles` finds the run's tile store (`mobanet.distributed.store`), starts
one actor per worker (each loads the model once), hands out the missing tiles
one at a time and shows progress in tiles and windows. A worker that dies has
its tile handed to another worker and is replaced (each tile gets
MAX_TILE_ATTEMPTS tries); an error in the inputs stops the run with that
error. An interrupt (SIGINT/SIGTERM, Cancel in QGIS) kills the workers and
keeps the finished tiles for the next run. `mobanet.raster.segment` then
assembles the outputs from the store, exactly as a single-process run writes
them.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobanet import __version__, errors
from mobanet.card import ModelCard
from mobanet.distributed.cluster import Cluster, WorkerLayout, connect, plan_workers
from mobanet.distributed.plan import DEFAULT_TILE_SIZE, Tile, check_tile_size, tile_plan
from mobanet.distributed.store import TileStore, file_identity, file_sha256, run_key, store_folder
from mobanet.distributed.worker import TileJob, TileWorker
from mobanet.errors import ClusterError, MobanetError
from mobanet.progress import Progress, Task
from mobanet.raster.blend import Block
from mobanet.raster.predict import RunStats
from mobanet.raster.scene import Scene
from mobanet.wording import option, option_list

MAX_TILE_ATTEMPTS = 3
POLL_S = 0.5  # how often the driver looks at its workers (and reacts to an interrupt)


@dataclass
class TileRun:
    """A finished set of tiles in the store, ready for assembly."""

    store: TileStore
    tiles: list[Tile]
    window: int
    device: str
    with_confidence: bool
    address: str
    tile_size: int
    computed: int = 0
    workers: int = 0
    workers_replaced: int = 0
    start_seconds: float = 0.0  # starting or joining Ray and loading the model on every worker
    tiles_seconds: float = 0.0  # computing the missing tiles

    def blocks(self) -> Iterator[Block]:
        return self.store.blocks(self.tiles, self.with_confidence)

    def discard(self) -> None:
        """Remove the store, and stores of earlier different commands for the same output."""
        for stale in self.store.stale_siblings():
            shutil.rmtree(stale, ignore_errors=True)
        self.store.discard()

    def summary(self) -> dict[str, Any]:
        return {"ray": self.address, "workers": self.workers, "workers_replaced": self.workers_replaced,
                "tile_size": self.tile_size, "tiles": len(self.tiles), "tiles_computed": self.computed,
                "tiles_reused": len(self.tiles) - self.computed,
                "ray_timings": {"start_s": round(self.start_seconds, 3), "tiles_s": round(self.tiles_seconds, 3)}}


def _key_fields(job: TileJob, scene: Scene, tile_size: int) -> dict[str, Any]:
    """Everything that decides the content of the tiles (see `mobanet.distributed.store`)."""
    return {"optical": file_identity(job.optical), "dsm": file_identity(job.dsm), "mask": file_identity(job.mask),
            "dsm_gaps": job.dsm_gaps, "model_sha256": file_sha256(job.model), "weights": file_identity(job.weights),
            "bands": job.bands, "window": job.window, **job.plan.summary(), "extent": job.extent, "gsd": job.gsd,
            "confidence": job.with_confidence, "tile_size": tile_size,
            "grid": [scene.width, scene.height, list(scene.geotransform)]}


def run_tiles(job: TileJob, scene: Scene, card: ModelCard, output: Path, address: str, workers: int | None,
              tile_size: int | None, stats: RunStats, progress: Progress) -> TileRun:
    """Compute every tile of ``scene`` that the store lacks on Ray (``local`` or HOST:PORT); see module docstring."""
    tile_size = DEFAULT_TILE_SIZE if tile_size is None else int(tile_size)
    check_tile_size(tile_size, job.window or card.window)  # before Ray starts; the plan checks the rounded window
    key = _key_fields(job, scene, tile_size)
    store = TileStore(store_folder(output, run_key(key)))
    stats.batch_size = job.batch_size
    recorded = store.read_plan()
    if recorded is not None:  # a run of this same command was interrupted: perhaps nothing is left to compute
        tiles = _plan(scene, job, int(recorded["window"]), tile_size)
        if len(store.finished(tiles)) == len(tiles):
            stats.windows = len(job.plan.grid(scene.width, scene.height, int(recorded["window"]),
                                              anchor=scene.anchor))
            progress.info(f"All {len(tiles)} tiles are in {store.folder} already; assembling the outputs.")
            return TileRun(store, tiles, int(recorded["window"]), str(recorded.get("device", "")),
                           job.with_confidence, address, tile_size)

    connecting = time.perf_counter()
    try:
        with connect(address, workers) as cluster, closing(
                _WorkerPool(cluster, plan_workers(cluster, job.device, workers), job, store, progress)) as pool:
            window = pool.start()
            start_seconds = time.perf_counter() - connecting
            grid = job.plan.grid(scene.width, scene.height, window, anchor=scene.anchor)
            tiles = _plan(scene, job, window, tile_size)
            store.write_plan({"window": window, "device": pool.device, "tiles": len(tiles), "key": key})
            store.remove_partials()
            finished = store.finished(tiles)
            missing = [t for t in tiles if t.name not in finished]
            progress.info(f"{len(tiles)} tiles of up to {tile_size} px on {pool.layout.count} Ray worker(s); "
                          f"{len(tiles) - len(missing)} already in {store.folder}, {len(missing)} to compute.")
            stats.windows = len(grid)
            started = time.perf_counter()
            pool.run(missing, tiles, stats)
            tiles_seconds = time.perf_counter() - started
            stats.total_seconds += tiles_seconds
            unseen = len(tiles) - len(store.finished(tiles))
            if unseen:
                raise ClusterError(f"{unseen} tile(s) that workers finished are not in {store.folder} as this "
                                   f"machine sees it; put {option('--output')} on storage that every worker "
                                   "shares (NFS, ...).")
    except BaseException:
        if store.tile_count():
            progress.info(f"Finished tiles are kept in {store.folder}; run the same command again to compute "
                          "only the missing ones.")
        raise
    finally:
        store.remove_partials()  # the workers stopped with the cluster: a tile one was writing is not kept

    return TileRun(store, tiles, window, pool.device, job.with_confidence, address, tile_size, len(missing),
                   pool.layout.count, pool.replaced, start_seconds, tiles_seconds)


def _plan(scene: Scene, job: TileJob, window: int, tile_size: int) -> list[Tile]:
    grid = job.plan.grid(scene.width, scene.height, window, anchor=scene.anchor)
    return tile_plan(scene.width, scene.height, grid, tile_size)


@dataclass
class _Running:
    actor: Any
    tile: Tile
    poll: Any = None  # a pending windows_done() call
    windows: int = 0  # windows of the tile done, as last polled


@dataclass
class _WorkerPool:
    """The actors of one run and the loop that feeds them tiles."""

    cluster: Cluster
    layout: WorkerLayout
    job: TileJob
    store: TileStore
    progress: Progress
    device: str = ""
    replaced: int = 0
    actors: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ray = self.cluster.ray
        self.actor_class = self.ray.remote(TileWorker).options(
            num_cpus=self.layout.cpus, num_gpus=self.layout.gpus, max_concurrency=2, max_restarts=0,
            scheduling_strategy="SPREAD")

    def _spawn(self) -> Any:
        actor = self.actor_class.remote(self.job, str(self.store.folder), self.layout.device, self.layout.threads)
        self.actors.append(actor)
        return actor

    def start(self) -> int:
        """Start the workers and wait until each has loaded the model; returns the window size."""
        self.progress.info(f"Starting {self.layout.count} Ray worker(s) ({self.layout.device}, "
                           f"{self.layout.threads} thread(s) each); each loads the model once.")
        actors = [self._spawn() for _ in range(self.layout.count)]
        infos = self._get([a.ready.remote() for a in actors], "start")
        for number, info in enumerate(infos, 1):
            self._check_ready(info)
            self.progress.info(f"Worker {number} of {len(infos)} ready: pid {info['pid']} on {info['host']} "
                               f"({info['device']}).")
        self.device = infos[0]["device"]
        self.idle = deque(actors)
        return int(infos[0]["window"])

    def _check_ready(self, info: dict[str, Any]) -> None:
        if info["error"] is not None:
            kind, message = info["error"]
            error_class = getattr(errors, kind, MobanetError)
            raise (error_class if isinstance(error_class, type) and issubclass(error_class, MobanetError)
                   else MobanetError)(message)
        if info["version"] != __version__:
            raise ClusterError(f"Worker {info['host']} runs mobanet {info['version']} but this driver runs "
                               f"{__version__}; install the same version on every node.")

    def _get(self, refs: list[Any], what: str) -> list[Any]:
        """ray.get in short waits (so that an interrupt is handled at once)."""
        pending = list(refs)
        while pending:
            _, pending = self.ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayActorError as exc:
            raise ClusterError(f"A Ray worker died during {what} ({_first_line(exc)}); every node needs the same "
                               "mobanet and Ray installed and enough memory for the model (see `ray logs`), then "
                               "run the same command again.") from exc

    def run(self, missing: list[Tile], tiles: list[Tile], stats: RunStats) -> None:
        """Compute ``missing`` (of ``tiles``); retries the tiles of workers that die."""
        total_windows = sum(t.windows for t in tiles)
        done_windows = total_windows - sum(t.windows for t in missing)
        done_tiles = len(tiles) - len(missing)
        task = self.progress.task(total_windows, "Segmenting on Ray", unit="window")
        task.update(done_windows)
        queue, running, attempts = deque(missing), {}, Counter()
        try:
            while queue or running:
                while self.idle and queue:
                    actor, tile = self.idle.popleft(), queue.popleft()
                    running[actor.run_tile.remote(tile)] = _Running(actor, tile)
                finished, _ = self.ray.wait(list(running), num_returns=1, timeout=POLL_S)
                for ref in finished:
                    job = running.pop(ref)
                    try:
                        result = self.ray.get(ref)
                    except self.ray.exceptions.RayActorError as exc:  # the worker process is gone
                        attempts[job.tile.name] += 1
                        self._replace(job, exc, attempts[job.tile.name])
                        queue.appendleft(job.tile)
                        continue
                    except self.ray.exceptions.RayTaskError as exc:
                        raise _user_error(exc, job.tile) from None
                    self.idle.append(job.actor)
                    done_tiles += 1
                    done_windows += job.tile.windows
                    stats.windows_predicted += int(result["windows_predicted"])
                    stats.model_seconds += float(result["model_s"])
                self._poll(running)
                _show(task, done_windows + sum(r.windows for r in running.values()), done_tiles, len(tiles))
        finally:
            task.close()

    def _replace(self, job: _Running, exc: Exception, attempt: int) -> None:
        self.ray.kill(job.actor, no_restart=True)
        self.actors.remove(job.actor)
        if attempt >= MAX_TILE_ATTEMPTS:
            raise ClusterError(f"Tile {job.tile.name} lost its worker {attempt} times ({_first_line(exc)}); the "
                               "workers may run out of memory on it (try a smaller "
                               f"{option_list('--tile-size', '--batch-size')}). "
                               "Run the same command again to resume.")
        self.replaced += 1
        self.progress.warning(f"A Ray worker died while computing tile {job.tile.name} ({_first_line(exc)}); the "
                              "tile goes to another worker and a new worker starts.")
        self.idle.append(self._spawn())

    def _poll(self, running: dict[Any, _Running]) -> None:
        """Ask busy workers how far into their tile they are (for the progress bar; never blocks)."""
        polls = {r.poll: r for r in running.values() if r.poll is not None}
        if polls:
            answered, _ = self.ray.wait(list(polls), num_returns=len(polls), timeout=0)
            for ref in answered:
                job = polls[ref]
                job.poll = None
                try:
                    job.windows = min(int(self.ray.get(ref)), job.tile.windows)
                except self.ray.exceptions.RayError:
                    pass  # a dying worker: the tile's result says what happened
        for job in running.values():
            if job.poll is None:
                job.poll = job.actor.windows_done.remote()

    def close(self) -> None:
        """Stop every worker at once (after an interrupt they may be in the middle of a tile)."""
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone: nothing to stop
                pass
        self.actors.clear()


def _show(task: Task, windows: int, done_tiles: int, total_tiles: int) -> None:
    task.desc = f"Segmenting on Ray: {done_tiles}/{total_tiles} tiles"
    task.set_postfix(tiles=f"{done_tiles}/{total_tiles}")
    if windows > task.done:
        task.update(windows - task.done)


def _user_error(exc: Exception, tile: Tile) -> Exception:
    """The worker's own error when it is one for the user; otherwise a bug report that names the tile."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, MobanetError):
        return cause
    return RuntimeError(f"A Ray worker failed on tile {tile.name}: {cause!r}")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
