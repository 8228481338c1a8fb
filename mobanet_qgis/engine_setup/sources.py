"""What a set-up installs: the engine's pinned requirements and the engine's own code.

Both travel with the plugin: in the release zip under ``<plugin>/engine/``
(``requirements.txt`` and the ``mobanet`` package), in the repository under
``engine/`` beside the plugin folder. ``engine/requirements.txt`` is the one
list of run-time requirements (also used by ``make install`` and ``make
wheelhouse``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from mobanet_qgis.engine_setup.feedback import SetupError

PLUGIN_DIR = Path(__file__).resolve().parents[1]
REQUIREMENTS_NAME = "requirements.txt"
PACKAGE_NAME = "mobanet"

# torch and the packages built with it come from a torch-specific index (CUDA or CPU wheels).
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)
_SKIPPED_PARTS = {"__pycache__"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def requirement_name(requirement: str) -> str:
    """The normalised project name of a requirement line ('Torch>=2' -> 'torch')."""
    match = _NAME.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


@dataclass(frozen=True)
class Requirements:
    """The pinned run-time requirements, split into the torch family and the rest."""

    lines: tuple[str, ...]

    @classmethod
    def read(cls, path: Path) -> Requirements:
        lines = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                lines.append(line)
        return cls(tuple(lines))

    @property
    def torch(self) -> list[str]:
        return [line for line in self.lines if requirement_name(line) in TORCH_FAMILY]

    @property
    def others(self) -> list[str]:
        return [line for line in self.lines if requirement_name(line) not in TORCH_FAMILY]

    def without(self, name: str) -> list[str]:
        return [line for line in self.lines if requirement_name(line) != name]

    @property
    def sha256(self) -> str:
        """Identifies the requirement set (comments and order do not matter)."""
        return hashlib.sha256("\n".join(sorted(self.lines)).encode()).hexdigest()


@dataclass(frozen=True)
class EngineSource:
    """The engine's code (the ``mobanet`` package) and its requirements file, as shipped with the plugin."""

    root: Path

    @property
    def package(self) -> Path:
        return self.root / PACKAGE_NAME

    @property
    def requirements_file(self) -> Path:
        return self.root / REQUIREMENTS_NAME

    def requirements(self) -> Requirements:
        return Requirements.read(self.requirements_file)

    def version(self) -> str:
        match = _VERSION.search((self.package / "__init__.py").read_text(encoding="utf-8"))
        if not match:
            raise SetupError(f"The engine at {self.package} has no __version__; reinstall the plugin.")
        return match.group(1)

    def files(self) -> list[Path]:
        """The package's files (no caches), sorted."""
        return sorted(path for path in self.package.rglob("*")
                      if path.is_file() and not _SKIPPED_PARTS.intersection(path.parts)
                      and path.suffix not in _SKIPPED_SUFFIXES)

    def sha256(self) -> str:
        """Identifies the engine's code: changes with any file, so a plugin update upgrades the engine."""
        digest = hashlib.sha256()
        for path in self.files():
            digest.update(path.relative_to(self.root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()


def find_engine_source(plugin_dir: Path = PLUGIN_DIR) -> EngineSource:
    """The engine shipped with this plugin: inside it (release zip) or beside it (repository)."""
    for root in (plugin_dir / "engine", plugin_dir.parent / "engine"):
        source = EngineSource(root)
        if (source.package / "__init__.py").is_file() and source.requirements_file.is_file():
            return source
    raise SetupError(
        f"The plugin folder {plugin_dir} has no engine (engine/{PACKAGE_NAME} and engine/{REQUIREMENTS_NAME}); "
        "reinstall the plugin from its zip.")
