"""Tiled inference: windows in, blended rows of classes out, for a scene of any size.

One loop serves `segment` (a file of any size, streamed to disk) and
`predict_array` (a small scene into memory, for validation during training).
A reader thread reads the next strip of windows while the model computes on
the current batch; on CUDA the model runs under bf16 autocast (fp16 on GPUs
without native bf16) and an out-of-memory error halves the batch instead of
failing. Where the windows go and how their logits combine is the tiling
plan's business (`mobanet.raster.tiling`).

The work of one model call is bounded, so a run stops within seconds of
SIGINT/SIGTERM (handled between calls and between the model's layers): a
window is never larger than the scene needs or than MAX_WINDOW_PATCHES
patches a side (attention cost grows with the square of its tokens), and a
call takes at most CALL_PIXELS pixels of windows.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mobanet.card import ModelCard
from mobanet.errors import InputError, ModelFileError
from mobanet.progress import Progress
from mobanet.raster.blend import Block, StripBlender
from mobanet.raster.scene import Scene
from mobanet.raster.tiling import DEFAULT_PLAN, TilingPlan
from mobanet.raster.windows import WindowGrid
from mobanet.wording import option

PREFETCH_BATCHES = 2
MAX_WINDOW_PATCHES = 64  # 896 px at patch 14: 4,096 tokens a window
CALL_PIXELS = {"cpu": 4 * 518 * 518, "cuda": 64 * 518 * 518}  # pixels of all windows in one model call


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"Device {name!r} was asked for but no CUDA GPU is usable here; "
                             f"set {option('--device')} to cpu (or auto).")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"Device {name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible; "
                             f"set {option('--device')} to one of cuda:0 .. cuda:{torch.cuda.device_count() - 1}.")
        return device
    raise InputError(f"Unknown device {name!r}; set {option('--device')} to auto, cpu, cuda or cuda:N.")


def native_bf16(device: torch.device) -> bool:
    """True on CUDA GPUs that compute in bf16 natively (compute capability 8.0+: A100, H100, RTX 30xx and newer).

    ``torch.cuda.is_bf16_supported()`` also says yes where bf16 is only emulated (V100, T4), which is slow.
    """
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Inference precision on ``device``: bf16 where native, else fp16 on CUDA; None (float32) on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if native_bf16(device) else torch.float16


def is_out_of_memory(exc: BaseException) -> bool:
    """An accelerator allocation failure: the caching allocator's error, or cuBLAS/cuDNN failing to allocate."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text)


def max_window(patch_size: int) -> int:
    """The largest window side a model call takes (MAX_WINDOW_PATCHES patches)."""
    return MAX_WINDOW_PATCHES * patch_size


def resolve_window(window: int | None, card: ModelCard, patch_size: int,
                   scene_size: tuple[int, int] | None = None) -> int:
    """The window side: the card's default or ``window``, a multiple of the patch size, bounded.

    At most `max_window` and, given the scene's (width, height), no larger
    than the scene's longer side needs: a bigger window only adds padding.
    """
    size = card.window if window is None else int(window)
    if size < patch_size:
        raise InputError(f"Window {size} px is smaller than the model's patch size ({patch_size} px); set "
                         f"{option('--window')} to {card.window} (the model's default) or another multiple of "
                         f"{patch_size}.")
    size = min(size, max_window(patch_size))
    if scene_size is not None:
        size = min(size, max(scene_size))
    return math.ceil(size / patch_size) * patch_size


class WindowPredictor:
    """The model on its device: numpy windows in, float32 numpy logits out.

    ``autocast_dtype`` is the precision the model computes in (see `autocast_dtype`; None = float32). On an
    accelerator out-of-memory error the batch is halved and the same windows are tried again; ``chunk`` keeps
    the largest batch known to fit for the rest of the run.
    """

    def __init__(self, model: nn.Module, device: torch.device, batch_size: int, progress: Progress | None = None):
        self.model = model.to(device).eval()
        self.device = device
        self.chunk = max(1, batch_size)
        self.progress = progress
        self.autocast_dtype = autocast_dtype(device)

    def __call__(self, optical: np.ndarray, dsm: np.ndarray) -> np.ndarray:
        outputs, start = [], 0
        budget = CALL_PIXELS.get(self.device.type, CALL_PIXELS["cpu"])
        self.chunk = min(self.chunk, max(1, budget // (optical.shape[-2] * optical.shape[-1])))
        while start < len(optical):
            stop = start + self.chunk
            try:
                outputs.append(self._forward(optical[start:stop], dsm[start:stop]))
            except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(exc):
                    raise
                if self.chunk == 1:
                    raise InputError(f"The {self.device} device ran out of memory even for one window; use a "
                                     f"smaller {option('--window')} or set {option('--device')} to cpu.") from exc
            else:
                start = stop
                continue
            self._halve_batch()  # here, not in the except block, whose traceback still holds the batch's tensors
        return np.concatenate(outputs)

    def _halve_batch(self) -> None:
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):
                torch.cuda.empty_cache()
        self.chunk //= 2
        if self.progress is not None:
            self.progress.warning(f"Out of memory on {self.device}: batch size lowered to {self.chunk}.")

    def _forward(self, optical: np.ndarray, dsm: np.ndarray) -> np.ndarray:
        optical_t = torch.from_numpy(optical).to(self.device)
        dsm_t = torch.from_numpy(dsm).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                                    enabled=self.autocast_dtype is not None):
            logits = self.model(optical_t, dsm_t)
        return logits.float().cpu().numpy()


@dataclass
class _Batch:
    positions: list[tuple[int, int]]
    optical: np.ndarray  # [b, 3, T, T]
    dsm: np.ndarray  # [b, 1, T, T]
    valid: np.ndarray  # [b, T, T]
    windows_done: int  # grid windows this batch accounts for (skipped all-nodata windows included)


@dataclass
class RunStats:
    """What a tiled run did and where its time went."""

    windows: int = 0
    windows_predicted: int = 0
    model_seconds: float = 0.0
    total_seconds: float = 0.0
    batch_size: int = 0


def _read_batches(scene: Scene, grid: WindowGrid, batch_size: int, stop: threading.Event,
                  counted: np.ndarray | None = None) -> Iterator[_Batch]:
    """Read the grid strip by strip (one read per row of windows) and cut it into batches of valid windows.

    ``counted`` (bool [T, T]) marks the window pixels whose prediction is used; a window with no valid pixel
    there is skipped. Default: all of them.
    """
    size = grid.window
    counted = np.ones((size, size), bool) if counted is None else counted
    x_first, span = grid.span_x
    pending: list[tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray]] = []
    done = 0

    def batch() -> _Batch:
        nonlocal pending, done
        if not pending:  # only skipped windows since the last batch: progress, nothing to predict
            empty = np.zeros((0, 1, size, size), np.float32)
            made = _Batch([], empty, empty, np.zeros((0, size, size), bool), done)
        else:
            made = _Batch([p[0] for p in pending], np.stack([p[1] for p in pending]),
                          np.stack([p[2] for p in pending]), np.stack([p[3] for p in pending]), done)
        pending, done = [], 0
        return made

    for y in grid.ys:
        if stop.is_set():
            return
        optical, dsm, valid = scene.read(x_first, y, span, size)
        for x in grid.xs:
            done += 1
            c = slice(x - x_first, x - x_first + size)
            if not (valid[:, c] & counted).any():
                continue  # nothing to predict here (nodata, outside the mask or the DSM)
            pending.append(((x, y), optical[:, :, c], dsm[:, :, c], valid[:, c]))
            if len(pending) == batch_size:
                yield batch()
    if pending or done:
        yield batch()


def _prefetched(batches: Iterator[_Batch], stop: threading.Event) -> Iterator[_Batch]:
    """Run a batch generator in a reader thread, a few batches ahead; errors surface in the caller."""
    slots: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
    finished = object()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(finished)
        except BaseException as exc:  # handed to the consumer, re-raised there
            slots.put(exc)

    reader = threading.Thread(target=produce, name="mobanet-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = slots.get()
            if item is finished:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                pass
            reader.join(timeout=0.05)


def _upright(array: np.ndarray, flips: tuple[bool, bool]) -> np.ndarray:
    """Windows [..., h, w] turned to north-up, east-right (the model's view); the same call turns them back."""
    rows, columns = flips
    if rows:
        array = array[..., ::-1, :]
    if columns:
        array = array[..., ::-1]
    return np.ascontiguousarray(array) if rows or columns else array


def predict_blocks(predictor: WindowPredictor, num_classes: int, scene: Scene, window: int, plan: TilingPlan,
                   batch_size: int, with_confidence: bool = True, progress: Progress | None = None,
                   stats: RunStats | None = None, grid: WindowGrid | None = None) -> Iterator[Block]:
    """Blocks of finished rows, top to bottom, covering the whole scene (the shared window loop).

    ``grid``: the windows to run (default: the plan's map-anchored grid of the scene); a distributed tile
    passes the windows of the whole scene's grid that touch it. ``plan`` also weighs each window's logits.
    """
    if grid is None:
        grid = plan.grid(scene.width, scene.height, window, anchor=scene.anchor)
    weights = plan.weights(window)
    x_first, span = grid.span_x
    blender = StripBlender(num_classes, scene.width, scene.height, window, x_first, span, with_confidence, weights)
    stats = stats if stats is not None else RunStats()
    stats.windows, stats.batch_size = len(grid), batch_size
    task = progress.task(len(grid), "Segmenting", unit="window") if progress is not None else None
    stop = threading.Event()
    started = time.perf_counter()
    try:
        for batch in _prefetched(_read_batches(scene, grid, batch_size, stop, weights > 0), stop):
            if batch.positions:
                tic = time.perf_counter()
                flips = scene.upright_flips  # a south-up raster is read as stored; the model sees it upright
                logits = _upright(predictor(_upright(batch.optical, flips), _upright(batch.dsm, flips)), flips)
                stats.model_seconds += time.perf_counter() - tic
                if logits.shape[1] != num_classes:
                    raise ModelFileError(f"The model predicts {logits.shape[1]} classes but its card lists "
                                         f"{num_classes}; the model file is inconsistent, re-export it.")
                stats.windows_predicted += len(batch.positions)
                for (x, y), window_logits, valid in zip(batch.positions, logits, batch.valid, strict=True):
                    yield from blender.add(x, y, window_logits, valid)
            if task is not None:
                task.update(batch.windows_done)
        yield from blender.finish()
    finally:
        stop.set()
        stats.total_seconds += time.perf_counter() - started
        stats.batch_size = predictor.chunk
        if task is not None:
            task.close()


def predict_array(model: nn.Module, card: ModelCard, scene: Scene, window: int | None = None,
                  plan: TilingPlan = DEFAULT_PLAN, batch_size: int = 4, device: str = "auto",
                  progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Classes uint8 [H, W] (255 where invalid) and top-class probability float32 [H, W] of a small scene."""
    predictor = WindowPredictor(model, resolve_device(device), batch_size, progress)
    size = resolve_window(window, card, predictor_patch_size(model), (scene.width, scene.height))
    classes = np.full((scene.height, scene.width), 255, np.uint8)
    confidence = np.zeros((scene.height, scene.width), np.float32)
    for block in predict_blocks(predictor, card.num_classes, scene, size, plan, batch_size, True, progress):
        rows = slice(block.y, block.y + block.classes.shape[0])
        classes[rows] = block.classes
        confidence[rows] = block.confidence
    return classes, confidence


def predictor_patch_size(model: nn.Module) -> int:
    """The model's patch size (windows are multiples of it); 1 for models without patches."""
    return int(getattr(model, "patch_size", 1))
