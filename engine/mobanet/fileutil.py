"""Outputs appear complete or not at all, all of a command's outputs together.

A command opens one `OutputSet` and asks it for a temporary name beside each
final name (`OutputSet.add`); writers write there. When the set commits, each
temporary file is flushed to the disk (fsync) and verified by its writer's
check (reopened and compared with what was written), and only when every one
is complete are they renamed onto their final names, together: a failure
while renaming puts the previous files back. An error or an interrupt removes
them all, so nothing half-written ever sits under a name a user or the QGIS
plugin looks for.

Temporary names are ``.NAME.partial-PID.EXT`` beside the final name (the
extension is kept: GDAL picks drivers by it); those whose process is gone (a
killed run) are removed the next time a command writes into that folder.
Write errors (disk full, file too large, quota, read-only file system) become
an `OutputError` that names the final file and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import resource
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mobanet.errors import OutputError

GDAL_SIDECARS = (".aux.xml", ".ovr", ".msk")  # files GDAL may write beside a raster, x.tif.aux.xml
PARTIAL_NAME = re.compile(r"^\.(?P<name>.+)\.partial-(?P<pid>\d+)(?P<rest>.*)$")
LOW_SPACE_BYTES = 1 << 20

# errno -> (what happened, what to do), for messages
WRITE_FAILURES = {
    errno.ENOSPC: ("the disk is full", "free space on it or choose another folder"),
    errno.EFBIG: ("the file would exceed the largest file this system or file system allows (a file-size limit, "
                  "or FAT32's 4 GB)", "write to another file system or process a smaller area"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space within your quota or choose another folder"),
    errno.EROFS: ("the file system is read-only", "choose another folder"),
    errno.EACCES: ("permission was denied", "choose a folder you can write to"),
    errno.EPERM: ("permission was denied", "choose a folder you can write to"),
    errno.EIO: ("the disk reported an input/output error", "check the disk or choose another folder"),
}
MESSAGE_ERRNOS = {"no space left": errno.ENOSPC, "file too large": errno.EFBIG, "quota": errno.EDQUOT,
                  "read-only file system": errno.EROFS, "permission denied": errno.EACCES,
                  "input/output error": errno.EIO}


def _errno_of(error: BaseException | str) -> int | None:
    if isinstance(error, OSError) and error.errno in WRITE_FAILURES:
        return error.errno
    text = str(error).lower()
    return next((code for words, code in MESSAGE_ERRNOS.items() if words in text), None)


def _diagnose(path: Path) -> int | None:
    """Why writing ``path`` (a temporary file) may have failed when the error itself does not say."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    with contextlib.suppress(OSError):
        if limit != resource.RLIM_INFINITY and path.exists() and path.stat().st_size >= limit:
            return errno.EFBIG
    folder = nearest_folder(path.parent)
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < LOW_SPACE_BYTES:
            return errno.ENOSPC
    return None


def final_name(path: str | os.PathLike) -> Path:
    """The final name a temporary ``.NAME.partial-PID.EXT`` stands for (``path`` itself otherwise)."""
    path = Path(path)
    match = PARTIAL_NAME.match(path.name)
    return path.with_name(match["name"] + match["rest"]) if match else path


def write_error(final: str | os.PathLike, error: BaseException | str, written: Path | None = None) -> OutputError:
    """An `OutputError` naming ``final``: why writing failed (from the error, or diagnosed) and the fix."""
    final = final_name(final)
    code = _errno_of(error) or _diagnose(written if written is not None else final)
    if code is None:
        return OutputError(f"Writing {final} failed ({error}); check the free space and file-size limit of "
                           f"{nearest_folder(final.parent)} or choose another folder.")
    what, fix = WRITE_FAILURES[code]
    return OutputError(f"Writing {final} failed: {what}; {fix}. Nothing was written under the output names.")


def nearest_folder(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (where a folder to be created lives)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete temporary files (and their sidecars) left in ``folder`` by runs whose process is gone."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = PARTIAL_NAME.match(entry.name)
            if match is None or int(match["pid"]) == os.getpid() or _process_alive(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_durably(path: Path, data: bytes) -> None:
    """Write, flush and fsync ``data``; every error (also at close) raises."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class ReadBackError(Exception):
    """A verifier found the written file different from what was written."""


def same_bytes(data: bytes) -> Callable[[Path], None]:
    """A verifier: the file holds exactly ``data``."""
    expected = hashlib.sha256(data).digest()

    def verify(path: Path) -> None:
        if hashlib.sha256(path.read_bytes()).digest() != expected:
            raise ReadBackError()
    return verify


@dataclass
class Output:
    """One file of a set: written at ``temp``, checked with ``verify(temp)``, renamed to ``final``."""

    final: Path
    temp: Path
    verify: Callable[[Path], None] | None = None
    sidecars: tuple[str, ...] = ()  # suffixes of files a writer may put beside it (GDAL_SIDECARS)


@dataclass
class _Renamed:
    final: Path
    backup: Path | None  # the previous file, kept until the whole set is in place


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the renames run, then deliver them: a set is renamed whole or not at all."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    for number in previous:
        signal.signal(number, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    for number in caught[:1]:
        handler = previous[number]
        if callable(handler):
            handler(number, None)


class OutputSet:
    """The files one command writes, committed together (see module docstring).

    Use as a context manager: a clean exit commits, an exception discards.
    Files are renamed in the reverse order of `add`, so add the main output
    first: once it exists under its name, everything else does too.
    """

    def __init__(self) -> None:
        self.outputs: list[Output] = []
        self._scratch: list[Path] = []
        self._folders_seen: set[Path] = set()
        self._after_commit: list[Callable[[], None]] = []
        self._closed = False

    # -- building the set --------------------------------------------------------------------------
    def _temporary_name(self, final: Path, label: str = "") -> Path:
        folder = final.parent
        existing = nearest_folder(folder)
        if existing not in self._folders_seen:
            self._folders_seen.add(existing)
            remove_stale_partials(existing)
        missing = Path(os.path.abspath(folder)).relative_to(existing).parts  # folders to create at commit
        stem = ".".join([*missing, final.stem, *([label] if label else [])])
        temp = existing / f".{stem}.partial-{os.getpid()}{final.suffix}"
        taken = {o.temp for o in self.outputs} | set(self._scratch)
        if temp in taken:
            raise ValueError(f"internal error: two outputs of one set share the temporary name {temp}")
        return temp

    def add(self, final: str | os.PathLike, verify: Callable[[Path], None] | None = None,
            sidecars: tuple[str, ...] = ()) -> Output:
        """Register ``final``; write to the returned `Output`'s ``temp`` (set ``verify`` when known)."""
        final = Path(final)
        if any(o.final == final for o in self.outputs):
            raise ValueError(f"internal error: {final} was added twice to one output set")
        output = Output(final, self._temporary_name(final), verify, sidecars)
        self.outputs.append(output)
        return output

    def scratch(self, beside: str | os.PathLike, label: str) -> Path:
        """A temporary file for intermediate data near ``beside``; removed when the set closes."""
        path = self._temporary_name(Path(beside), label)
        self._scratch.append(path)
        return path

    def write_bytes(self, final: str | os.PathLike, data: bytes) -> None:
        """A whole file from memory: written durably now, verified byte for byte at commit."""
        output = self.add(final, verify=same_bytes(data))
        try:
            write_durably(output.temp, data)
        except OSError as exc:
            raise write_error(output.final, exc, output.temp) from exc

    def write_text(self, final: str | os.PathLike, text: str) -> None:
        self.write_bytes(final, text.encode("utf-8"))

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the set is in place (side effects that must not precede it); never on discard."""
        self._after_commit.append(action)

    # -- finishing ---------------------------------------------------------------------------------
    def commit(self) -> None:
        """Sync and verify every file, then rename them all onto their final names (or none)."""
        if self._closed:
            raise RuntimeError("internal error: an output set was committed twice")
        try:
            for output in self.outputs:
                self._check(output)
            with _signals_deferred():
                self._rename_all()
        except BaseException:
            self.discard()
            raise
        self._closed = True
        self._remove(self._scratch)
        for action in self._after_commit:
            action()

    def _check(self, output: Output) -> None:
        if not output.temp.exists():
            raise RuntimeError(f"internal error: {output.final} was never written")
        try:
            for path in (output.temp, *self._sidecars(output.temp, output.sidecars)):
                _fsync(path)
            if output.verify is not None:
                output.verify(output.temp)
            os.chmod(output.temp, 0o666 & ~_current_umask())  # some writers (safetensors) create 0600 files
        except OSError as exc:
            raise write_error(output.final, exc, output.temp) from exc
        except ReadBackError as exc:
            raise OutputError(f"Writing {output.final} failed: the file reads back different from what was "
                              "written; check the disk and write it again.") from exc

    @staticmethod
    def _sidecars(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
        return [side for side in (Path(f"{path}{s}") for s in suffixes) if side.exists()]

    def _rename_all(self) -> None:
        created: list[Path] = []
        done: list[_Renamed] = []
        try:
            for output in reversed(self.outputs):
                folder = Path(os.path.abspath(output.final.parent))
                for missing in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
                    missing.mkdir()
                    created.append(missing)
                moves = [(output.temp, output.final)]
                moves += [(Path(f"{output.temp}{s}"), Path(f"{output.final}{s}")) for s in output.sidecars]
                for temp, final in moves:
                    if temp.exists():
                        backup = self._backup(final) if final.exists() else None
                        os.replace(temp, final)
                        done.append(_Renamed(final, backup))
                    elif final.exists():  # a sidecar of the replaced file that the new file does not have
                        aside = self._backup_name(final)
                        os.replace(final, aside)
                        done.append(_Renamed(final, aside))
            for folder in {o.final.parent for o in self.outputs}:
                with contextlib.suppress(OSError):
                    _fsync(folder)
        except OSError as exc:
            for renamed in reversed(done):  # put the previous files back
                with contextlib.suppress(OSError):
                    if renamed.backup is not None:
                        os.replace(renamed.backup, renamed.final)
                    else:
                        os.unlink(renamed.final)
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise write_error(final_name(exc.filename or self.outputs[0].final), exc) from exc
        for renamed in done:
            if renamed.backup is not None:
                with contextlib.suppress(OSError):
                    os.unlink(renamed.backup)

    @staticmethod
    def _backup_name(final: Path) -> Path:
        backup = final.with_name(f".{final.name}.partial-{os.getpid()}.previous")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(backup)
        return backup

    @classmethod
    def _backup(cls, final: Path) -> Path | None:
        """A hard link to the file about to be replaced (None where the file system has no hard links)."""
        backup = cls._backup_name(final)
        try:
            os.link(final, backup)
        except OSError:
            return None
        return backup

    def discard(self) -> None:
        """Remove every temporary file of the set (nothing under a final name is touched)."""
        self._closed = True
        self._remove([o.temp for o in self.outputs])
        for output in self.outputs:
            self._remove(self._sidecars(output.temp, output.sidecars))
        self._remove(self._scratch)

    @staticmethod
    def _remove(paths: list[Path]) -> None:
        for path in paths:
            for leftover in (path, *(Path(f"{path}{s}") for s in GDAL_SIDECARS)):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    leftover.unlink()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, traceback: object) -> None:
        if self._closed:
            return
        if kind is None:
            self.commit()
        else:
            self.discard()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, sidecars: tuple[str, ...] = GDAL_SIDECARS) -> Iterator[Path]:
    """A set of one file: yields its temporary path, renamed onto ``path`` when the block succeeds."""
    with OutputSet() as outputs:
        yield outputs.add(path, sidecars=sidecars).temp


def check_writable(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """The single-output path check, kept here for existing callers: see `mobanet.pathcheck.check_paths`."""
    from mobanet.pathcheck import check_writable as check  # pathcheck builds on this module

    return check(path, inputs)
