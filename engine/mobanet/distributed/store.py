"""The tile store: finished tiles of one distributed run, kept on disk until the outputs are assembled.

The store is a folder beside the output, ``.OUT.tif.tiles-KEY``, where KEY
hashes everything that decides the tiles' content (inputs and their sizes and
modification times, the model file's SHA-256, bands, window, tiling plan, extent,
mask, pixel size, tile size, engine version): rerunning the same command finds
the tiles it already has and computes only the missing ones; a changed command
gets another folder and never reuses stale tiles. Each tile is one ``.npz``
file written under a temporary name and renamed when complete, so a worker that
dies while writing leaves no half tile. The folder is removed once the outputs
are assembled; after a failure or an interrupt it stays for the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal

from mobanet import __version__
from mobanet.distributed.plan import Tile
from mobanet.errors import InputError
from mobanet.raster.blend import Block

PLAN_FILE = "plan.json"
TILE_SUFFIX = ".npz"
PARTIAL_MARK = ".partial-"
HASH_CHUNK = 8 * 1024 * 1024


def file_identity(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """Name, size and modification time of an input (local or a GDAL /vsi path); None for no file."""
    if path is None:
        return None
    text = str(path)
    name = text if text.startswith("/vsi") else str(Path(text).resolve())
    stat = gdal.VSIStatL(text)
    if stat is None:
        return {"path": name}
    return {"path": name, "size": int(stat.size), "mtime": int(stat.mtime)}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_key(fields: dict[str, Any]) -> str:
    """A short hash of what determines the tiles (a JSON-able dict; the engine version is added)."""
    text = json.dumps({"engine": __version__, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def store_folder(output: str | os.PathLike, key: str) -> Path:
    output = Path(output)
    return output.with_name(f".{output.name}.tiles-{key}")


@dataclass
class TileStore:
    """The store folder of one run (see module docstring)."""

    folder: Path

    def tile_path(self, tile: Tile) -> Path:
        return self.folder / f"{tile.name}{TILE_SUFFIX}"

    # -- the plan ---------------------------------------------------------------
    def read_plan(self) -> dict[str, Any] | None:
        """What the run that made this store recorded (window, tiles, key fields), or None for a new store."""
        path = self.folder / PLAN_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # an unreadable plan is written again; the tiles stay keyed by the folder name

    def write_plan(self, plan: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_atomic(self.folder / PLAN_FILE, lambda path: path.write_text(
            json.dumps(plan, indent=1, sort_keys=True, default=str), encoding="utf-8"))

    # -- tiles ------------------------------------------------------------------
    def finished(self, tiles: list[Tile]) -> set[str]:
        """Names of the tiles that have a complete file."""
        if not self.folder.is_dir():
            return set()
        present = {p.name for p in self.folder.iterdir()}
        return {t.name for t in tiles if f"{t.name}{TILE_SUFFIX}" in present}

    def tile_count(self) -> int:
        """Complete tile files in the store (half-written ones not counted)."""
        if not self.folder.is_dir():
            return 0
        return sum(1 for p in self.folder.iterdir() if p.name.endswith(TILE_SUFFIX) and PARTIAL_MARK not in p.name)

    def save(self, block: Block, tile: Tile) -> None:
        """Write one tile atomically (a worker calls this)."""
        arrays = {"classes": block.classes}
        if block.confidence is not None:
            arrays["confidence"] = block.confidence
        self._write_atomic(self.tile_path(tile), lambda path: np.savez(path, **arrays))

    def load(self, tile: Tile, with_confidence: bool) -> Block:
        """One stored tile as a block of the scene; a damaged file is deleted so that a rerun recomputes it."""
        path = self.tile_path(tile)
        try:
            with np.load(path, allow_pickle=False) as data:
                classes = data["classes"]
                confidence = data["confidence"] if with_confidence else None
        except (OSError, KeyError, ValueError) as exc:
            path.unlink(missing_ok=True)
            raise InputError(f"The stored tile {path} is unreadable ({exc}); it was removed: run the same command "
                             "again to compute it anew.") from exc
        shape = (tile.height, tile.width)
        if classes.shape != shape or (confidence is not None and confidence.shape != shape):
            path.unlink(missing_ok=True)
            raise InputError(f"The stored tile {path} has the wrong size; it was removed: run the same command "
                             "again to compute it anew.")
        return Block(tile.y, classes, confidence, tile.x)

    def blocks(self, tiles: list[Tile], with_confidence: bool) -> Iterator[Block]:
        """Full-width blocks of rows, top to bottom (as the writers take them): one row of tiles at a time."""
        for y in sorted({t.y for t in tiles}):
            row = [self.load(t, with_confidence) for t in sorted((t for t in tiles if t.y == y), key=lambda t: t.x)]
            classes = np.concatenate([b.classes for b in row], axis=1)
            confidence = np.concatenate([b.confidence for b in row], axis=1) if with_confidence else None
            yield Block(y, classes, confidence)

    def remove_partials(self) -> None:
        """Delete files that a killed worker left half-written (call while no worker of this run writes)."""
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if PARTIAL_MARK in path.name:
                    path.unlink(missing_ok=True)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def stale_siblings(self) -> list[Path]:
        """Stores of earlier, different commands for the same output (left by runs that did not finish)."""
        prefix = self.folder.name.rsplit("-", 1)[0] + "-"
        return [p for p in self.folder.parent.iterdir()
                if p.name.startswith(prefix) and p.is_dir() and p != self.folder]

    @staticmethod
    def _write_atomic(path: Path, write: Any) -> None:
        partial = path.with_name(f".{path.stem}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}{path.suffix}")
        try:
            write(partial)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
