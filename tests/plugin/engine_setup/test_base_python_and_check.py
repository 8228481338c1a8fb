"""QGIS's own Python as the base of the environment, and the check that reports what an environment has."""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from mobanet_qgis.engine_setup.base_python import candidates, find_base_python
from mobanet_qgis.engine_setup.check import check_environment
from mobanet_qgis.engine_setup.environments import Environment
from mobanet_qgis.engine_setup.feedback import SetupError
from mobanet_qgis.engine_setup.network import python_environment

ROOT = Path(__file__).resolve().parents[3]


def test_base_python_is_the_interpreter_under_sys_base_prefix_with_qgis_numpy():
    """Here QGIS runs Debian's /usr/bin/python3.11 (the tests run in a venv made from it)."""
    base = find_base_python()
    assert base.executable == Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert base.major_minor == f"{sys.version_info[0]}.{sys.version_info[1]}"
    import numpy  # the tests' venv sees the base Python's numpy, the one GDAL's bindings are built against

    assert base.numpy == numpy.__version__


def test_candidates_per_platform():
    assert candidates(Path(r"C:\OSGeo4W\apps\Python312"), "win32", (3, 12))[0].name == "python.exe"
    mac = candidates(Path("/Applications/QGIS.app/Contents/Frameworks"), "darwin", (3, 12))
    assert mac[0] == Path("/Applications/QGIS.app/Contents/Frameworks/bin/python3.12")


def test_a_python_of_another_version_is_not_taken(tmp_path):
    with pytest.raises(SetupError, match="Python 3.99 interpreter that QGIS runs was not found"):
        find_base_python(Path(sys.base_prefix), sys.platform, (3, 99))


def _engine_environment() -> Path:
    """The engine environment of this run: the repository's .venv (make install), else the one $MOBANET_PYTHON
    belongs to (make test-ltr, where mobanet:setup made it)."""
    repository = ROOT / ".venv"
    if (repository / "bin" / "python").is_file():
        return repository
    return Path(os.environ["MOBANET_PYTHON"]).parents[1]


def test_check_reports_what_the_development_environment_has():
    """The engine environment, asked directly (these tests' own Python may have no torch)."""
    environment = _engine_environment()
    python = environment / "bin" / "python"
    code = ("import json, torch, timm; from osgeo import gdal; print(json.dumps("
            "[torch.__version__, timm.__version__, gdal.__version__, torch.cuda.is_available()]))")
    asked = subprocess.run([str(python), "-s", "-c", code], capture_output=True, text=True, timeout=300,
                           env=python_environment())
    torch_version, timm_version, gdal_version, cuda = json.loads(asked.stdout.splitlines()[-1])
    report = check_environment(Environment(environment))
    assert report.ok, report.errors
    assert (report.torch_version, report.timm_version, report.gdal_version) == (torch_version, timm_version,
                                                                                 gdal_version)
    assert report.engine_version and report.cuda_available == cuda and report.free_disk_gb > 0
    assert any(line.startswith("torch: ") for line in report.lines())


def test_check_names_everything_an_empty_environment_lacks(tmp_path):
    venv.create(tmp_path / "bare", with_pip=False)  # sees neither torch nor QGIS's GDAL
    report = check_environment(Environment(tmp_path / "bare"))
    assert not report.ok
    assert {"torch", "timm", "gdal", "engine"} <= set(report.errors)
    assert "ModuleNotFoundError" in report.errors["torch"]
