"""Set-ups that must stop before changing anything, and a failed build that must leave nothing behind.

These run the real algorithm (processing.run) or the real installer with real
pip; the full story with torch is tests/plugin/test_setup_qgis_process.py.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

from mobanet_qgis.engine_setup.environments import Location
from mobanet_qgis.engine_setup.feedback import SetupError
from mobanet_qgis.engine_setup.installer import Installer, SetupRequest
from mobanet_qgis.engine_setup.sources import EngineSource

ROOT = Path(__file__).resolve().parents[3]


def _run_setup(parameters):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as raised:
        processing.run("mobanet:setup", parameters)
    message = str(raised.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_location_inside_the_plugin_folder_is_refused(mobanet_provider):
    message = _run_setup({"LOCATION": str(ROOT / "mobanet_qgis" / "engine-env")})
    assert "inside the plugin folder" in message and "LOCATION" in message


def test_location_below_a_file_is_refused(mobanet_provider, tmp_path):
    (tmp_path / "a file").write_text("x")
    message = _run_setup({"LOCATION": str(tmp_path / "a file" / "engine")})
    assert f"{tmp_path / 'a file'} is a file" in message
    assert not (tmp_path / "a file").is_dir()


def test_an_empty_wheelhouse_is_refused(mobanet_provider, tmp_path):
    (tmp_path / "wheels").mkdir()
    message = _run_setup({"LOCATION": str(tmp_path / "engine"), "WHEELHOUSE": str(tmp_path / "wheels")})
    assert "holds no wheels" in message and "make wheelhouse" in message
    assert not (tmp_path / "engine").exists()


def test_a_wheelhouse_for_another_python_is_refused_with_the_command_that_makes_the_right_one(mobanet_provider,
                                                                                                tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "tqdm-4.70.1-py3-none-any.whl").write_bytes(b"")
    (wheels / "wheelhouse.json").write_text(json.dumps({"python_version": "3.99"}))
    message = _run_setup({"LOCATION": str(tmp_path / "engine"), "WHEELHOUSE": str(wheels)})
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert "made for Python 3.99" in message and f"make wheelhouse PYTHON_VERSION={version}" in message


def test_a_running_setup_blocks_a_second_one(mobanet_provider, tmp_path):
    location = Location(tmp_path / "engine")
    with location.lock():
        message = _run_setup({"LOCATION": str(location.folder)})
    assert "Another set-up is running" in message


def test_a_failed_build_is_removed_and_the_active_environment_stays(recording_feedback, tmp_path):
    """An engine whose requirements lack torch: pip succeeds, the check fails, nothing is switched."""
    engine = tmp_path / "engine"
    shutil.copytree(ROOT / "engine" / "mobanet", engine / "mobanet",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (engine / "requirements.txt").write_text("tqdm>=4.60\n")
    location = Location(tmp_path / "engine env")
    location.folder.mkdir()
    (location.folder / "active").write_text("env-earlier\n")
    (location.folder / "env-earlier").mkdir()  # the environment in use (here a broken one): must stay untouched
    feedback = recording_feedback()
    with pytest.raises(SetupError, match="new engine environment does not work") as failed:
        Installer(SetupRequest(location.folder, device="cpu"), feedback, EngineSource(engine)).run()
    assert "torch" in str(failed.value)
    assert sorted(p.name for p in location.folder.iterdir()) == ["active", "env-earlier"]
    assert (location.folder / "active").read_text() == "env-earlier\n"
    assert any(line.startswith("Removing the unfinished environment") for line in feedback.infos)
    assert any(line.startswith("Successfully installed") and "mobanet-" in line for line in feedback.console)
