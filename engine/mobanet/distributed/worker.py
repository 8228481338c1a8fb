"""One Ray worker: opens the scene and loads the model once, then predicts tiles into the tile store.

A plain class: the driver makes it a Ray actor (`mobanet.distributed.driver`),
so nothing here imports Ray and the class runs in any process. The worker
writes each finished tile itself (atomically, `TileStore.save`); the driver
only hears a small summary, so tiles never travel through the driver. A
problem with the inputs (a file the worker cannot see, a model it cannot load)
is kept and reported by `ready` as the user-facing error it is.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mobanet import __version__
from mobanet.distributed.plan import Tile, predict_tile
from mobanet.distributed.store import TileStore
from mobanet.errors import MobanetError
from mobanet.modelfile import load_model
from mobanet.progress import Progress, Task
from mobanet.raster.normalize import DsmNormalizer, OpticalNormalizer
from mobanet.raster.predict import RunStats, WindowPredictor, predictor_patch_size, resolve_device, resolve_window
from mobanet.raster.scene import open_scene
from mobanet.raster.tiling import TilingPlan
from mobanet.wording import option


@dataclass
class TileJob:
    """What every worker needs to see the scene and the model exactly as the driver does."""

    optical: str
    dsm: str | None  # None: no DSM, the model gets the missing-modality input (`mobanet.model.masking.hide`)
    model: str
    weights: str | None
    bands: list[int] | None
    extent: tuple[float, float, float, float] | None
    mask: str | None
    gsd: float | None  # predict at this pixel size (--resample-to-model-gsd), else None
    window: int | None  # as asked for; each worker rounds it to the model's patch size
    plan: TilingPlan  # where the windows go and how their logits combine, as in the single-process run
    batch_size: int
    device: str  # what the user asked for; the driver turns it into the workers' device
    with_confidence: bool
    optical_normalizer: OpticalNormalizer  # the driver's statistics: every worker normalises alike
    dsm_normalizer: DsmNormalizer | None
    dsm_gaps: str  # "predict" or "nodata": pixels where a given DSM has no data


class _WindowCounter(Progress):
    """Counts the windows the window loop reports, so that the driver can show progress inside a tile."""

    def __init__(self) -> None:
        super().__init__("quiet")
        self.done = 0

    def task(self, total: int, desc: str, unit: str = "it") -> Task:
        return _CountingTask(self, total, desc, unit)


class _CountingTask(Task):
    def update(self, n: int = 1) -> None:
        super().update(n)
        self.progress.done += n  # type: ignore[attr-defined]


class TileWorker:
    """The model on one worker's device and the scene on its storage; `run_tile` predicts one tile."""

    def __init__(self, job: TileJob, store_folder: str, device: str, threads: int):
        self.job = job
        self.store = TileStore(Path(store_folder))
        self.threads = threads
        self.counter = _WindowCounter()
        self.error: tuple[str, str] | None = None
        self.window = 0
        self.device = device
        try:
            torch.set_num_threads(threads)
            torch_device = resolve_device(device)
            network, card = load_model(job.model, weights=job.weights, device=torch_device)
            self.scene = open_scene(job.optical, job.dsm, card, bands=job.bands, extent=job.extent, mask=job.mask,
                                    gsd=job.gsd, dsm_gaps=job.dsm_gaps)
            self.scene.optical_normalizer = job.optical_normalizer
            self.scene.dsm_normalizer = job.dsm_normalizer
            self.num_classes = card.num_classes
            self.window = resolve_window(job.window, card, predictor_patch_size(network),
                                         (self.scene.width, self.scene.height))
            self.predictor = WindowPredictor(network, torch_device, job.batch_size, self.counter)
            self.device = str(torch_device)
            if not os.access(self.store.folder.parent, os.W_OK):
                raise MobanetError(f"Cannot write the tile folder {self.store.folder} from worker "
                                   f"{socket.gethostname()}; put {option('--output')} on storage that every worker "
                                   "can write (a shared filesystem).")
        except MobanetError as exc:
            self.error = (type(exc).__name__, f"{exc} (on worker {socket.gethostname()})")

    def ready(self) -> dict[str, Any]:
        """Who this worker is and whether it could open everything (``error``: kind and message)."""
        return {"pid": os.getpid(), "host": socket.gethostname(), "version": __version__, "window": self.window,
                "device": self.device, "threads": self.threads, "error": self.error}

    def windows_done(self) -> int:
        """Windows of the current tile predicted so far (polled by the driver while the tile runs)."""
        return self.counter.done

    def run_tile(self, tile: Tile) -> dict[str, Any]:
        """Predict one tile and store it; returns what the driver counts."""
        if self.error is not None:
            raise MobanetError(self.error[1])
        self.counter.done = 0
        started = time.perf_counter()
        stats = RunStats()
        block = predict_tile(self.predictor, self.num_classes, self.scene, tile, self.window, self.job.plan,
                             self.job.batch_size, self.job.with_confidence, self.counter, stats)
        self.store.save(block, tile)
        return {"tile": tile.name, "windows": tile.windows, "windows_predicted": stats.windows_predicted,
                "model_s": stats.model_seconds, "seconds": time.perf_counter() - started, "pid": os.getpid()}

