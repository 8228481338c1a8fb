"""Check an engine environment: import the engine and what it needs there, and report what was found.

The report (engine version, Python, torch and its CUDA build, whether CUDA
works and on which GPU, timm, GDAL, free disk) goes to the log and becomes
the outputs of ``mobanet:setup``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobanet_qgis.engine_setup.environments import Environment, free_space
from mobanet_qgis.engine_setup.network import python_environment

CHECK_SCRIPT = Path(__file__).resolve().with_name("check_script.py")
CHECK_TIMEOUT_S = 600.0
GIB = 1024 ** 3


@dataclass
class CheckReport:
    """What an environment's Python could import."""

    python: str = ""
    executable: str = ""
    engine_version: str = ""
    engine_distribution: str = ""
    torch_version: str = ""
    torch_cuda: str | None = None
    cuda_available: bool = False
    gpus: list[str] = field(default_factory=list)
    timm_version: str = ""
    numpy_version: str = ""
    gdal_version: str = ""
    free_disk_gb: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def gpu(self) -> str:
        return ", ".join(self.gpus)

    def lines(self) -> list[str]:
        """The report for the log."""
        gpu = f"GPU available: {self.gpu}" if self.cuda_available else "no GPU available"
        cuda = f"CUDA {self.torch_cuda} build, {gpu}" if self.torch_cuda else "CPU build"
        return [f"Engine: mobanet {self.engine_version} ({self.engine_distribution})",
                f"Python: {self.python} ({self.executable})",
                f"torch: {self.torch_version} ({cuda})",
                f"timm: {self.timm_version}", f"numpy: {self.numpy_version}", f"GDAL: {self.gdal_version}",
                f"Free disk: {self.free_disk_gb:.1f} GB"]

    def to_dict(self) -> dict[str, Any]:
        return {"python": self.python, "engine_version": self.engine_version, "torch_version": self.torch_version,
                "torch_cuda": self.torch_cuda, "cuda_available": self.cuda_available, "gpus": self.gpus,
                "timm_version": self.timm_version, "numpy_version": self.numpy_version,
                "gdal_version": self.gdal_version}


def check_environment(environment: Environment) -> CheckReport:
    """Run the check script with the environment's Python (no PYTHONPATH, no user site-packages)."""
    report = CheckReport(free_disk_gb=free_space(environment.folder) / GIB)
    try:
        result = subprocess.run([str(environment.python), "-s", str(CHECK_SCRIPT)], capture_output=True, text=True,
                                env=python_environment(), timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL,
                                cwd=str(environment.folder))
    except (OSError, subprocess.SubprocessError) as exc:
        report.errors["python"] = f"{environment.python} did not run: {exc}"
        return report
    try:
        found = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        report.errors["python"] = f"{environment.python} failed (exit code {result.returncode}): {tail[0]}"
        return report
    torch = found.get("torch") or {}
    engine = found.get("engine") or {}
    report.python = found.get("python", "")
    report.executable = found.get("executable", "")
    report.engine_version = engine.get("version", "")
    report.engine_distribution = engine.get("distribution", "")
    report.torch_version = torch.get("version", "")
    report.torch_cuda = torch.get("cuda")
    report.cuda_available = bool(torch.get("cuda_available"))
    report.gpus = list(torch.get("gpus") or [])
    report.timm_version = found.get("timm", "")
    report.numpy_version = found.get("numpy", "")
    report.gdal_version = found.get("gdal", "")
    report.errors = dict(found.get("errors") or {})
    return report
