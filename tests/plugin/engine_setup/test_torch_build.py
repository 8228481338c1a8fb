"""Which torch build a set-up picks, and NVIDIA GPU detection through nvidia-smi.

This machine has no GPU; the detection is exercised against a stand-in
``nvidia-smi`` on the PATH that prints what the real one prints for
``--query-gpu=name,driver_version --format=csv,noheader``.
"""

import os
import stat

import pytest

from mobanet_qgis.engine_setup.feedback import SetupError
from mobanet_qgis.engine_setup.torch_build import CPU_INDEX, CUDA_INDEX, NvidiaGpu, detect_nvidia_gpus, plan_torch

GPU = NvidiaGpu("NVIDIA H100 80GB HBM3", "580.65.06")


def _fake_nvidia_smi(folder, script):
    path = folder / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return folder


def test_gpus_listed_by_nvidia_smi(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, 'echo "NVIDIA H100 80GB HBM3, 580.65.06"\necho "NVIDIA L4, 580.65.06"\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin:/bin")
    assert detect_nvidia_gpus() == [GPU, NvidiaGpu("NVIDIA L4", "580.65.06")]


def test_no_gpu_without_nvidia_smi_or_when_it_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_nvidia_gpus() == []
    _fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed because it could not communicate with the driver"\n'
                               "exit 9\n")
    assert detect_nvidia_gpus() == []


@pytest.mark.parametrize(("device", "gpus", "platform", "build", "index", "fallback"), [
    ("auto", [GPU], "linux", "cuda", None, False),  # PyPI's Linux torch is the CUDA build
    ("auto", [], "linux", "cpu", CPU_INDEX, True),
    ("cpu", [GPU], "linux", "cpu", CPU_INDEX, True),
    ("cuda", [], "linux", "cuda", None, False),  # e.g. a shared environment for GPU machines
    ("auto", [GPU], "win32", "cuda", CUDA_INDEX, True),  # PyPI's Windows torch is the CPU build
    ("auto", [], "win32", "cpu", None, False),
    ("auto", [GPU], "darwin", "default", None, False),
])
def test_torch_build_and_index_per_platform(device, gpus, platform, build, index, fallback):
    plan = plan_torch(device, gpus, "", platform)
    assert (plan.build, plan.index_url, plan.fallback) == (build, index, fallback)
    assert plan.reason


def test_index_url_overrides_without_fallback_and_bad_choices_say_what_to_do():
    plan = plan_torch("auto", [], "https://mirror.example/torch-cpu", "linux")
    assert (plan.build, plan.index_url, plan.fallback) == ("cpu", "https://mirror.example/torch-cpu", False)
    with pytest.raises(SetupError, match="use auto or cpu"):
        plan_torch("cuda", [], "", "darwin")
    with pytest.raises(SetupError, match="auto, cpu, cuda"):
        plan_torch("rocm", [], "", "linux")
