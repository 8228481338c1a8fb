"""Build mobanet_qgis.zip for the QGIS plugin manager.

Layout: one top folder ``mobanet_qgis/`` holding the plugin, its
``metadata.txt``, the engine (``mobanet_qgis/engine/mobanet``) with its pinned
run-time requirements (``mobanet_qgis/engine/requirements.txt``, what
``mobanet:setup`` installs) and the resources it needs at run time
(``mobanet_qgis/resources``: icons, styles and the embedded default model). No
tests, caches or build leftovers. The engine finds ``resources/`` two folders
above its package, as in the repository.

Built from the source tree alone with the standard library (any Python 3.9+):
no virtual environment, nothing installed, nothing written outside the output.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = "mobanet_qgis"
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache", "tests", "test"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
RESOURCE_FOLDERS = ("icons", "styles", "models")

# ZIP timestamps are fixed so that the same tree gives the same archive.
FIXED_DATE = (2026, 1, 1, 0, 0, 0)


def _wanted(path: Path) -> bool:
    return (path.is_file() and not SKIP_PARTS.intersection(path.parts) and path.suffix not in SKIP_SUFFIXES
            and ".partial-" not in path.name)


def _files_under(folder: Path, prefix: str) -> list[tuple[Path, str]]:
    return [(source, f"{prefix}/{source.relative_to(folder).as_posix()}")
            for source in sorted(folder.rglob("*")) if _wanted(source)]


def package_members() -> list[tuple[Path, str]]:
    """(source file, name in the zip) for everything that goes in, sorted."""
    members = _files_under(ROOT / "mobanet_qgis", TOP)
    members += _files_under(ROOT / "engine" / "mobanet", f"{TOP}/engine/mobanet")
    members.append((ROOT / "engine" / "requirements.txt", f"{TOP}/engine/requirements.txt"))
    for folder in RESOURCE_FOLDERS:
        members += _files_under(ROOT / "resources" / folder, f"{TOP}/resources/{folder}")
    members.append((ROOT / "LICENSE", f"{TOP}/LICENSE"))
    return members


def build(output: Path) -> Path:
    output = output.resolve()
    tmp = output.with_name(f".{output.name}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for source, name in package_members():
                info = zipfile.ZipInfo(name, FIXED_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (source.stat().st_mode & 0o777) << 16
                archive.writestr(info, source.read_bytes())
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "mobanet_qgis.zip", help="zip file to write")
    args = parser.parse_args()
    path = build(args.output)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
