"""The Python that QGIS itself runs, which the engine's environment is built on.

The environment is a virtual environment of that interpreter made with
``--system-site-packages``: it sees QGIS's GDAL bindings (``osgeo``) and the
numpy they were built against, while everything pip installs goes into the
environment, never into QGIS's Python.

Inside QGIS ``sys.executable`` is often QGIS itself (``qgis``, ``qgis-bin.exe``,
the macOS app), so the interpreter is looked up under ``sys.base_prefix``:

- Linux (and conda, Flatpak): ``<prefix>/bin/python3.X`` (Debian: ``/usr/bin/python3.11``);
- Windows (OSGeo4W, standalone installer): ``<prefix>\\python.exe`` (``...\\apps\\Python312``);
- macOS (the QGIS app bundle): ``<prefix>/bin/python3.X`` inside the bundle's Python framework.

A candidate counts only if it runs and has QGIS's Python version (X.Y), since
the bindings it must see are built for that version.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mobanet_qgis.engine_setup.feedback import SetupError
from mobanet_qgis.engine_setup.network import python_environment

PROBE_TIMEOUT_S = 60.0

# Run by each candidate: its version, whether it can make virtual environments, its numpy.
_PROBE = """
import importlib.util, json, sys
try:
    import numpy
    numpy_version = numpy.__version__
except Exception:
    numpy_version = None
print(json.dumps({
    "version": "%d.%d.%d" % sys.version_info[:3],
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "venv": importlib.util.find_spec("venv") is not None,
    "ensurepip": importlib.util.find_spec("ensurepip") is not None,
    "numpy": numpy_version,
}))
"""


@dataclass(frozen=True)
class BasePython:
    """An interpreter to build the environment on, and what it has."""

    executable: Path
    version: str
    numpy: str | None

    @property
    def major_minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def candidates(base_prefix: Path | None = None, platform: str = sys.platform,
               version: tuple[int, int] = sys.version_info[:2]) -> list[Path]:
    """Where the interpreter of a Python installed under `base_prefix` may be, most specific first."""
    prefix = Path(base_prefix if base_prefix is not None else sys.base_prefix)
    major, minor = version
    if platform == "win32":
        return [prefix / "python.exe", prefix / "python3.exe"]
    names = [f"python{major}.{minor}", f"python{major}", "python"]
    return [prefix / "bin" / name for name in names]


def probe(executable: Path) -> dict | None:
    """What `executable` reports about itself, or None when it does not run."""
    try:
        result = subprocess.run([str(executable), "-s", "-c", _PROBE], capture_output=True, text=True,
                                timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL, env=python_environment())
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def find_base_python(base_prefix: Path | None = None, platform: str = sys.platform,
                     version: tuple[int, int] = sys.version_info[:2]) -> BasePython:
    """QGIS's own interpreter, checked: the right version and able to make virtual environments."""
    wanted = f"{version[0]}.{version[1]}"
    tried = []
    for executable in candidates(base_prefix, platform, version):
        if not executable.is_file():
            continue
        info = probe(executable)
        tried.append(str(executable))
        if info is None or not info["version"].startswith(wanted + "."):
            continue
        if not (info["venv"] and info["ensurepip"]):
            raise SetupError(
                f"QGIS's Python {executable} cannot create virtual environments (its venv/ensurepip modules are "
                f"missing): install them (Debian/Ubuntu: `sudo apt install python{wanted}-venv`) and run the "
                "set-up again.")
        return BasePython(executable, info["version"], info["numpy"])
    looked_in = ", ".join(tried) if tried else ", ".join(str(p) for p in candidates(base_prefix, platform, version))
    raise SetupError(
        f"The Python {wanted} interpreter that QGIS runs was not found (looked at {looked_in}); reinstall QGIS "
        "with its Python, or set Processing -> Options -> Providers -> MoBaNet -> Engine Python to a Python "
        "with torch, timm and GDAL.")
