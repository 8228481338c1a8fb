"""Progress and messages for long work: tqdm on a terminal, JSON lines for the plugin.

Under ``--json-progress`` standard output carries only JSON objects, one a line:

    {"event": "progress", "fraction": 0.42, "message": "Segmenting", "done": 42, "total": 100}
    {"event": "info", "message": "..."}
    {"event": "metrics", "epoch": 3, "miou": 0.71, ...}
    {"event": "result", ...}        # last line of a successful run
    {"event": "error", "message": "...", "kind": "InputError"}   # last line of a failed run

The QGIS plugin reads these lines into Processing feedback. Engine code never
prints to stdout itself: it calls a `Progress`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


def _jsonable(value: Any) -> Any:
    """Make numpy scalars/arrays and non-finite floats JSON-safe."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Progress:
    """Sink for progress, messages, metrics and the final result of one run.

    mode: "tqdm" (bars and messages on stderr), "json" (JSON lines on stdout)
    or "quiet" (nothing but warnings on stderr).
    """

    def __init__(self, mode: str = "tqdm", stream: TextIO | None = None, min_interval: float = 0.2):
        if mode not in ("tqdm", "json", "quiet"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self.stream = stream if stream is not None else (sys.stdout if mode == "json" else sys.stderr)
        self.min_interval = min_interval

    # -- events -----------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        """Write one JSON event (json mode only)."""
        if self.mode != "json":
            return
        self.stream.write(json.dumps(_jsonable({"event": event, **fields})) + "\n")
        self.stream.flush()

    def info(self, message: str) -> None:
        if self.mode == "json":
            self.emit("info", message=message)
        elif self.mode == "tqdm":
            tqdm.write(message, file=self.stream)

    def warning(self, message: str) -> None:
        if self.mode == "json":
            self.emit("warning", message=message)
        else:
            tqdm.write(f"warning: {message}", file=sys.stderr)

    def metrics(self, **values: Any) -> None:
        """Per-epoch (or final) numbers: a JSON event, or one readable line."""
        if self.mode == "json":
            self.emit("metrics", **values)
        elif self.mode == "tqdm":
            parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
                     if not isinstance(v, (dict, list))]
            tqdm.write(" ".join(parts), file=self.stream)

    def result(self, **payload: Any) -> None:
        self.emit("result", **payload)

    def error(self, message: str, kind: str = "MobanetError") -> None:
        if self.mode == "json":
            self.emit("error", message=message, kind=kind)
        else:
            print(f"error: {message}", file=sys.stderr)

    def task(self, total: int, desc: str, unit: str = "it") -> Task:
        return Task(self, total, desc, unit)


class Task:
    """One counted stage of work (a context manager); `update` advances it."""

    def __init__(self, progress: Progress, total: int, desc: str, unit: str):
        self.progress = progress
        self.total = max(int(total), 0)
        self.desc = desc
        self.done = 0
        self._last_emit = 0.0
        self._bar = None
        if progress.mode == "tqdm":
            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=progress.stream, dynamic_ncols=True)
        else:
            self._emit(force=True)

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_emit < self.progress.min_interval:
            return
        self._last_emit = now
        fraction = self.done / self.total if self.total else 1.0
        # rounded down: a long run must not show 100 % while its last units are still running
        self.progress.emit("progress", fraction=math.floor(min(fraction, 1.0) * 1e4) / 1e4, message=self.desc,
                           done=self.done, total=self.total)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        else:
            self._emit(force=self.done >= self.total)

    def set_description(self, desc: str) -> None:
        """Say what the work is now (e.g. which epoch): the bar's label, or the message of the next event."""
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description(desc, refresh=False)
        else:
            self._emit(force=True)

    def set_postfix(self, **values: Any) -> None:
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
