"""Which torch build the environment gets (CUDA or CPU) and where pip fetches it from.

PyPI's torch wheels are CUDA builds on Linux (about 4 GB more than the CPU
build, and they run on the CPU too), CPU builds on Windows and CPU/Metal
builds on macOS. PyTorch's own indexes carry the other variants. So:

========  ============================================  =============================================
DEVICE    Linux                                          Windows
========  ============================================  =============================================
cuda      pip's index (PyPI: CUDA build)                 PyTorch's CUDA index, else pip's (CPU build)
cpu       PyTorch's CPU index, else pip's (CUDA build)   pip's index (CPU build)
========  ============================================  =============================================

``auto`` means cuda when ``nvidia-smi`` lists an NVIDIA GPU and cpu otherwise;
macOS always takes pip's index. "else pip's" is a fall-back with a warning
for networks where download.pytorch.org is not reachable. An INDEX_URL given
by the user replaces PyTorch's index and has no fall-back.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mobanet_qgis.engine_setup.feedback import SetupError

DEVICES = ("auto", "cpu", "cuda")
PYTORCH_INDEX = "https://download.pytorch.org/whl"
CPU_INDEX = f"{PYTORCH_INDEX}/cpu"
CUDA_INDEX = f"{PYTORCH_INDEX}/cu130"  # the CUDA 13.0 builds, as on PyPI for Linux
NVIDIA_SMI_TIMEOUT_S = 20.0
_WINDOWS_NVIDIA_SMI = (Path(r"C:\Windows\System32\nvidia-smi.exe"),
                       Path(r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe"))


@dataclass(frozen=True)
class NvidiaGpu:
    name: str
    driver: str


def nvidia_smi() -> str | None:
    found = shutil.which("nvidia-smi")
    if found:
        return found
    if sys.platform == "win32":
        return next((str(path) for path in _WINDOWS_NVIDIA_SMI if path.is_file()), None)
    return None


def detect_nvidia_gpus() -> list[NvidiaGpu]:
    """The NVIDIA GPUs that the driver reports (empty without a driver or GPU)."""
    command = nvidia_smi()
    if command is None:
        return []
    try:
        listed = subprocess.run([command, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return []
    if listed.returncode != 0:
        return []
    gpus = []
    for line in listed.stdout.splitlines():
        name, _, driver = line.partition(",")
        if name.strip():
            gpus.append(NvidiaGpu(name.strip(), driver.strip()))
    return gpus


@dataclass(frozen=True)
class TorchPlan:
    """The torch build to install and where from."""

    build: str  # "cuda", "cpu", or "default" (macOS: whatever pip's index has)
    index_url: str | None  # None: pip's own index configuration
    fallback: bool  # when `index_url` fails, try pip's own index configuration (with a warning)
    reason: str  # for the log


def plan_torch(device: str, gpus: list[NvidiaGpu], index_url: str = "", platform: str = sys.platform) -> TorchPlan:
    """The torch build for DEVICE (auto/cpu/cuda) on this machine; see the module docstring."""
    if device not in DEVICES:
        raise SetupError(f"DEVICE must be one of {', '.join(DEVICES)}, not '{device}'.")
    if platform == "darwin":
        if device == "cuda":
            raise SetupError("DEVICE cuda is not available on macOS (there are no CUDA builds of torch for it); "
                             "use auto or cpu.")
        return TorchPlan("default", index_url or None, False, "macOS: torch from pip's index (CPU and Metal).")
    if device == "auto":
        build = "cuda" if gpus else "cpu"
        found = f"NVIDIA GPU found ({gpus[0].name}, driver {gpus[0].driver})" if gpus else "no NVIDIA GPU found"
        reason = f"DEVICE auto: {found}, so the {build.upper()} build of torch."
    else:
        build = device
        reason = f"DEVICE {device}: the {build.upper()} build of torch."
    if index_url:
        return TorchPlan(build, index_url, False, reason + f" torch from INDEX_URL {index_url}.")
    if platform == "win32":
        if build == "cuda":
            return TorchPlan(build, CUDA_INDEX, True, reason + f" torch from {CUDA_INDEX}.")
        return TorchPlan(build, None, False, reason + " torch from pip's index.")
    if build == "cpu":
        return TorchPlan(build, CPU_INDEX, True, reason + f" torch from {CPU_INDEX}.")
    return TorchPlan(build, None, False, reason + " torch from pip's index.")
