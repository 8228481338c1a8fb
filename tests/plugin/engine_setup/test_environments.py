"""The LOCATION folder: environments built aside, the active one switched atomically, one set-up at a time."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from mobanet_qgis.engine_setup.environments import ACTIVE_FILE, LOCK_FILE, Environment, Location, folder_size
from mobanet_qgis.engine_setup.feedback import SetupError


def _complete(environment: Environment) -> Environment:
    environment.python.parent.mkdir(parents=True)
    environment.python.symlink_to(sys.executable)
    environment.write_stamp({"requirements_sha256": "x"})
    return environment


def test_active_environment_only_when_complete_and_switched_atomically(tmp_path):
    location = Location(tmp_path / "engine env")  # spaces in paths are common (Windows user names)
    assert location.active() is None
    first = location.new_environment()
    first.python.parent.mkdir(parents=True)
    location.activate(first)
    assert location.active() is None  # no Python yet
    assert location.leftovers() == []  # but named in `active`: never removed as a leftover
    first.python.symlink_to(sys.executable)
    assert location.active() is None  # no stamp: the build did not finish
    first.write_stamp({"requirements_sha256": "x"})
    assert location.active() == first
    assert first.stamp()["format"] == 1 and first.stamp()["requirements_sha256"] == "x"

    second = _complete(location.new_environment())
    assert second.folder != first.folder
    assert location.leftovers() == [second.folder]
    location.activate(second)
    assert location.active() == second and location.leftovers() == [first.folder]
    assert (location.folder / ACTIVE_FILE).read_text().strip() == second.folder.name
    assert not [p for p in location.folder.iterdir() if ".partial-" in p.name]


def test_a_pointer_outside_the_location_is_ignored(tmp_path):
    location = Location(tmp_path)
    (tmp_path / ACTIVE_FILE).write_text("../elsewhere\n")
    assert location.active() is None


def test_one_set_up_at_a_time_and_an_abandoned_lock_is_taken_over(tmp_path):
    location = Location(tmp_path / "engine")
    with location.lock():
        with pytest.raises(SetupError, match="Another set-up is running"):
            with location.lock():
                pass
    assert not (location.folder / LOCK_FILE).exists()

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = {"pid": int(ended.stdout), "host": socket.gethostname(), "started": time.time()}
    (location.folder / LOCK_FILE).write_text(json.dumps(holder))
    with location.lock():  # its process has ended (an interrupted set-up): the lock is taken over
        assert json.loads((location.folder / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_folder_size_counts_files(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"x" * 24)
    assert folder_size(tmp_path) == 1024
