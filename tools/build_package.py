"""Build mobanet_qgis.zip for the QGIS plugin manager.

Layout: one top folder ``mobanet_qgis/`` holding the plugin, its
``metadata.txt``, the engine (``mobanet_qgis/engine/mobanet``) and the
resources it needs at run time (``mobanet_qgis/resources``: icons, styles and
the embedded default model). No tests, caches or build leftovers. The engine
finds ``resources/`` two folders above its package, as in the repository.
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


def package_members() -> list[tuple[Path, str]]:
    """(source file, name in the zip) for everything that goes in, sorted."""
    members: list[tuple[Path, str]] = []
    for source in sorted((ROOT / "mobanet_qgis").rglob("*")):
        if _wanted(source):
            members.append((source, f"{TOP}/{source.relative_to(ROOT / 'mobanet_qgis').as_posix()}"))
    for source in sorted((ROOT / "engine" / "mobanet").rglob("*")):
        if _wanted(source):
            members.append((source, f"{TOP}/engine/mobanet/{source.relative_to(ROOT / 'engine' / 'mobanet').as_posix()}"))
    for folder in RESOURCE_FOLDERS:
        for source in sorted((ROOT / "resources" / folder).rglob("*")):
            if _wanted(source):
                members.append((source, f"{TOP}/resources/{source.relative_to(ROOT / 'resources').as_posix()}"))
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
