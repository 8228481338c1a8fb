"""The folder that holds the engine's environments, and which one is active.

Layout of a LOCATION folder::

    active              the name of the active environment folder (one line, replaced atomically)
    env-<time>/         a virtual environment, with mobanet-setup.json: what the set-up installed
    setup.lock          present while a set-up runs

A virtual environment cannot be moved once made, so a new one is built in a
new ``env-<time>`` folder beside the active one and ``active`` is switched to
it only after it is complete and checked; a cancelled or failed build is
deleted and the previous environment keeps working. Anything not named in
``active`` is a leftover that the next set-up removes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobanet_qgis.engine_setup.feedback import SetupError

ACTIVE_FILE = "active"
ENVIRONMENT_PREFIX = "env-"
STAMP_FILE = "mobanet-setup.json"
LOCK_FILE = "setup.lock"
STAMP_FORMAT = 1
# A lock we cannot check (another machine, or Windows) is considered abandoned after this long.
LOCK_EXPIRY_S = 24 * 3600


@dataclass(frozen=True)
class Environment:
    """One virtual environment in a LOCATION folder."""

    folder: Path

    @property
    def python(self) -> Path:
        if sys.platform == "win32":
            return self.folder / "Scripts" / "python.exe"
        return self.folder / "bin" / "python"

    @property
    def stamp_path(self) -> Path:
        return self.folder / STAMP_FILE

    def stamp(self) -> dict[str, Any] | None:
        """What the set-up recorded about this environment, or None (incomplete, or not ours)."""
        try:
            stamp = json.loads(self.stamp_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return stamp if isinstance(stamp, dict) and stamp.get("format") == STAMP_FORMAT else None

    def write_stamp(self, stamp: dict[str, Any]) -> None:
        _write_atomically(self.stamp_path, json.dumps({"format": STAMP_FORMAT, **stamp}, indent=2) + "\n")


class Location:
    """A LOCATION folder (see the module docstring)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def active(self) -> Environment | None:
        """The active environment when it is complete (its Python and stamp exist), else None."""
        name = self.active_name()
        if not name:
            return None
        environment = Environment(self.folder / name)
        if not environment.python.is_file() or environment.stamp() is None:
            return None
        return environment

    def new_environment(self) -> Environment:
        """A fresh, not yet existing environment folder."""
        base = ENVIRONMENT_PREFIX + time.strftime("%Y%m%d-%H%M%S")
        folder = self.folder / base
        counter = 1
        while folder.exists():
            counter += 1
            folder = self.folder / f"{base}-{counter}"
        return Environment(folder)

    def activate(self, environment: Environment) -> None:
        _write_atomically(self.folder / ACTIVE_FILE, environment.folder.name + "\n")

    def active_name(self) -> str:
        """The folder name that ``active`` holds ('' when there is none or it is not one of ours)."""
        try:
            name = (self.folder / ACTIVE_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return ""
        if not name.startswith(ENVIRONMENT_PREFIX) or "/" in name or "\\" in name:
            return ""
        return name

    def leftovers(self) -> list[Path]:
        """Environment folders that ``active`` does not name (old, cancelled or failed builds)."""
        if not self.folder.is_dir():
            return []
        active = self.active_name()
        return sorted(path for path in self.folder.iterdir()
                      if path.name.startswith(ENVIRONMENT_PREFIX) and path.is_dir() and path.name != active)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Only one set-up at a time per LOCATION (two QGIS windows, or a team's shared folder)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_FILE
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(2):
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = _read_lock(path)
                if _abandoned(other):
                    path.unlink(missing_ok=True)
                    continue
                raise SetupError(
                    f"Another set-up is running in {self.folder} (process {other.get('pid')} on "
                    f"{other.get('host')}); wait until it ends, or delete {path} if it was interrupted.") from None
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(holder, handle)
            break
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def _read_lock(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _abandoned(holder: dict[str, Any]) -> bool:
    """Whether the set-up that holds a lock has ended without removing it."""
    started = holder.get("started")
    if not isinstance(started, (int, float)) or time.time() - started > LOCK_EXPIRY_S:
        return True
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or sys.platform == "win32":
        return False  # cannot check another machine's processes; on Windows os.kill(pid, 0) would kill it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def remove_tree(folder: Path) -> bool:
    """Delete a folder; False when some of it could not be deleted (e.g. a file in use on Windows)."""
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()


def folder_size(folder: Path) -> int:
    """Bytes of the files under `folder` (links not followed)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def free_space(folder: Path) -> int:
    """Free bytes on the disk of `folder` (or of its nearest existing parent)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free
