"""The engine's code as a wheel, so that pip installs it (and upgrades or removes it) like any package.

A wheel is a zip of the package plus a ``*.dist-info`` folder; writing it here
needs no build backend (setuptools), which an offline machine may not have.
The version carries a hash of the code as a local label (``0.1.0+<hash>``),
so a plugin update that changes the engine gives a new version. The console
script and metadata mirror ``engine/pyproject.toml`` (a test keeps them equal).
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from mobanet_qgis.engine_setup.sources import EngineSource

DIST_NAME = "mobanet"
SUMMARY = "MoBaNet: modality-balanced optical + DSM segmentation on a frozen DINOv2 backbone"
CONSOLE_SCRIPTS = {"mobanet": "mobanet.cli:main"}
REQUIRES_PYTHON = ">=3.10"
TAG = "py3-none-any"
FIXED_DATE = (2026, 1, 1, 0, 0, 0)
HASH_LABEL_LENGTH = 12


def wheel_version(source: EngineSource) -> str:
    return f"{source.version()}+{source.sha256()[:HASH_LABEL_LENGTH]}"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata(version: str, requirements: list[str]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {DIST_NAME}", f"Version: {version}", f"Summary: {SUMMARY}",
             f"Requires-Python: {REQUIRES_PYTHON}", "License: MIT"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requirements]
    return "\n".join(lines) + "\n"


def build_engine_wheel(source: EngineSource, folder: Path) -> Path:
    """Write ``mobanet-<version>-py3-none-any.whl`` into `folder`; returns its path."""
    version = wheel_version(source)
    dist_info = f"{DIST_NAME}-{version}.dist-info"
    members: list[tuple[str, bytes]] = [
        (path.relative_to(source.root).as_posix(), path.read_bytes()) for path in source.files()]
    members.append((f"{dist_info}/METADATA", _metadata(version, list(source.requirements().lines)).encode()))
    members.append((f"{dist_info}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: mobanet_qgis.engine_setup\nRoot-Is-Purelib: true\n"
        f"Tag: {TAG}\n").encode()))
    scripts = "".join(f"{name} = {target}\n" for name, target in CONSOLE_SCRIPTS.items())
    members.append((f"{dist_info}/entry_points.txt", f"[console_scripts]\n{scripts}".encode()))
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in members)
    members.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{DIST_NAME}-{version}-{TAG}.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for name, data in members:
            info = zipfile.ZipInfo(name, FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            wheel.writestr(info, data)
    return path
