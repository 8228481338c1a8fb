"""Run by the engine environment's own Python (not by QGIS): what it can import, as one JSON line.

Standalone on purpose (standard library only at the top, no plugin imports):
QGIS runs it as ``<environment python> -s check_script.py`` and reads the last
line. Every import is tried even when an earlier one fails, so the report
names everything that is missing.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from typing import Any


def _version(module_name: str) -> str:
    module = __import__(module_name)
    return getattr(module, "__version__", "unknown")


def _engine() -> dict[str, str]:
    from importlib import metadata

    import mobanet
    import mobanet.model  # noqa: F401 - the model imports torch and timm as segmenting does

    return {"version": mobanet.__version__, "distribution": metadata.version("mobanet"), "file": mobanet.__file__}


def _torch() -> dict[str, Any]:
    import torch

    cuda_available = bool(torch.cuda.is_available())
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda_available else []
    if cuda_available:
        (torch.ones(2, device="cuda") * 2).sum().item()  # the GPU really runs a kernel
    return {"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": cuda_available, "gpus": gpus}


def _gdal() -> str:
    from osgeo import gdal

    return gdal.__version__


def main() -> None:
    report: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable, "errors": {}}

    def attempt(key: str, function: Callable[[], Any]) -> None:
        try:
            report[key] = function()
        except Exception as exc:  # report every failure and keep checking the rest
            report["errors"][key] = f"{type(exc).__name__}: {exc}"

    attempt("torch", _torch)
    attempt("timm", lambda: _version("timm"))
    attempt("numpy", lambda: _version("numpy"))
    attempt("safetensors", lambda: _version("safetensors"))
    attempt("tqdm", lambda: _version("tqdm"))
    attempt("gdal", _gdal)
    attempt("engine", _engine)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
