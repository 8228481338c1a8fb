"""One check, before any work, that a command's path arguments fit together.

Every command lists its path arguments — inputs, output files, output
folders, and the files it derives from them (the ``.qml`` beside a class
raster, a training run's ``.last``/``.state`` files and log files) — and
`check_paths` refuses, with the option and the fix:

- two arguments (or derived files) that name the same file, however spelled
  (relative, ``..``, symbolic or hard links), unless the command declares the
  pair compatible (a validation scene may also be a training scene);
- an output file that is an existing folder, lies in a missing or read-only
  folder, is read-only, or has an extension whose format is not written;
- an output folder that is an existing file, or cannot be created.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from mobanet.errors import InputError
from mobanet.fileutil import PARTIAL_NAME, nearest_folder
from mobanet.wording import option

INPUT, OUTPUT, FOLDER = "input", "output", "folder"


@dataclass(frozen=True)
class PathArgument:
    """One path a command reads or writes.

    ``derived`` names a file the command writes beside the argument
    ``option`` gives ("QGIS style"); ``suffixes`` are the accepted extensions
    of an output (lower case) and ``format`` what they mean ("GeoTIFF");
    ``new_folder`` says the command creates the output's folder if missing.
    """

    option: str
    path: Path
    kind: str = INPUT
    derived: str | None = None
    suffixes: tuple[str, ...] = ()
    format: str = ""
    new_folder: bool = False

    def describe(self) -> str:
        if self.derived:
            return f"the {self.derived} of {option(self.option)} ({self.path})"
        return f"{option(self.option)} {self.path}"


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    """The real path, and device + inode when the file exists (hard links share them)."""
    real = os.path.realpath(path)
    try:
        stat = os.stat(real)
    except OSError:
        return real, None
    return real, (stat.st_dev, stat.st_ino)


def _same_file(a: tuple[str, tuple[int, int] | None], b: tuple[str, tuple[int, int] | None]) -> bool:
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


def _check_output_file(argument: PathArgument) -> None:
    path, name = argument.path, argument.describe()
    if argument.suffixes and path.suffix.lower() not in argument.suffixes:
        kinds = ", ".join(argument.suffixes[:-1]) + (" or " if len(argument.suffixes) > 1 else "") + \
            argument.suffixes[-1]
        raise InputError(f"{name} has an extension mobanet does not write; give a file name ending in {kinds}"
                         f"{f' ({argument.format})' if argument.format else ''}.")
    if path.is_dir():
        example = path / f"result{argument.suffixes[0] if argument.suffixes else ''}"
        raise InputError(f"{name} is a folder; give a file name, e.g. {example}.")
    if path.exists() and not path.is_file():
        raise InputError(f"{name} is not a regular file (a device, pipe or socket); give a file name.")
    if PARTIAL_NAME.match(path.name):
        raise InputError(f"{name} has the form of mobanet's temporary files (.NAME.partial-PID); give another "
                         "file name.")
    folder = path.parent if str(path.parent) else Path(".")
    if argument.new_folder and not folder.exists():
        folder = nearest_folder(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"Cannot write {name}: {folder} is a file, not a folder; choose another path.")
    if not folder.is_dir():
        raise InputError(f"Cannot write {name}: folder {folder} does not exist; create it or choose another folder.")
    if not os.access(folder, os.W_OK):
        raise InputError(f"Cannot write {name}: folder {folder} is not writable; choose another folder.")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"Cannot overwrite {name}: the file is read-only; choose another file name.")


def _check_output_folder(argument: PathArgument) -> None:
    path, name = argument.path, argument.describe()
    if path.exists() and not path.is_dir():
        raise InputError(f"{name} is a file, not a folder; give a folder name (it is created if missing).")
    existing = nearest_folder(path)
    if not existing.is_dir():
        raise InputError(f"Cannot create {name}: {existing} is a file; give a folder name.")
    if not os.access(existing, os.W_OK):
        raise InputError(f"Cannot write into {name}: folder {existing} is not writable; choose another folder.")


def check_paths(arguments: Iterable[PathArgument], may_share: Iterable[tuple[str, str]] = ()) -> None:
    """Refuse clashing or unwritable paths (see module docstring); arguments with a None path are skipped."""
    arguments = [replace(a, path=Path(a.path)) for a in arguments if a.path is not None and str(a.path)]
    compatible = {frozenset(pair) for pair in may_share}
    for argument in arguments:
        if argument.kind == OUTPUT:
            _check_output_file(argument)
        elif argument.kind == FOLDER:
            _check_output_folder(argument)
    identities = [_identity(a.path) for a in arguments]
    for (i, a), (j, b) in itertools.combinations(enumerate(arguments), 2):
        shared = a.option == b.option or frozenset((a.option, b.option)) in compatible
        if a.kind == INPUT and b.kind == INPUT and shared:
            continue  # one option repeated (a scene per --optical), or a pair the command allows
        if _same_file(identities[i], identities[j]):
            raise InputError(f"{a.describe()} and {b.describe()} are the same file; give each its own file name.")


def check_writable(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = (),
                   flag: str = "--output") -> Path:
    """Check one output file against its inputs (the single-output case of `check_paths`)."""
    path = Path(path)
    check_paths([PathArgument(flag, path, OUTPUT), *(PathArgument("input", Path(p)) for p in inputs if p)])
    return path
