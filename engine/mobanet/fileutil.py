"""Outputs appear complete or not at all.

Every file the engine writes goes to a temporary name in the destination's
folder and is renamed onto the final name only when complete; an error or an
interrupt removes the temporary file, so no half file ever sits under the name
a user or the plugin looks for.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mobanet.errors import InputError


def check_writable(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Fail early, with the fix, when ``path`` cannot be written or would overwrite an input."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    for source in inputs:
        if source and Path(source).exists() and path.exists() and os.path.samefile(path, source):
            raise InputError(f"Output {path} is also an input; choose another output file name.")
        if source and path.resolve() == Path(source).resolve():
            raise InputError(f"Output {path} is also an input; choose another output file name.")
    if not folder.is_dir():
        raise InputError(f"Cannot write {path}: folder {folder} does not exist; create it or choose another path.")
    if not os.access(folder, os.W_OK):
        raise InputError(f"Cannot write {path}: folder {folder} is not writable; choose another output folder.")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"Cannot overwrite {path}: the file is read-only; choose another output file.")
    return path


def temporary_name(path: str | os.PathLike) -> Path:
    """A sibling of ``path`` that keeps its extension (GDAL picks drivers by it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, sidecars: tuple[str, ...] = (".aux.xml", ".ovr")) -> Iterator[Path]:
    """Yield a temporary path; rename it to ``path`` on success, delete it on any failure.

    ``sidecars`` are suffixes GDAL may write beside a raster (``x.tif.aux.xml``);
    they follow the main file on success and are removed on failure.
    """
    final = Path(path)
    tmp = temporary_name(final)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"internal error: {tmp} was not written")
        # some writers (safetensors) create 0600 files: give the output the mode a new file normally gets
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, final)
        for suffix in sidecars:
            side = Path(str(tmp) + suffix)
            if side.exists():
                os.replace(side, Path(str(final) + suffix))
    except BaseException:
        for leftover in (tmp, *(Path(str(tmp) + s) for s in sidecars)):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise
