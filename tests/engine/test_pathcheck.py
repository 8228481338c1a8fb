"""One path check before any work: no argument names another's file; outputs are writable, of a known format."""

from __future__ import annotations

import json
import os
import sys

import pytest

from mobanet.errors import InputError
from mobanet.pathcheck import FOLDER, OUTPUT, PathArgument, check_paths
from mobanet.wording import LABELS_VARIABLE

from .mounts import on_tmpfs


def test_two_arguments_naming_one_file_are_refused_however_spelled(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.tif").write_bytes(b"x")
    (tmp_path / "link.tif").symlink_to(data / "a.tif")
    os.link(data / "a.tif", tmp_path / "hard.tif")
    for spelling in (data / "a.tif", data / ".." / "data" / "a.tif", tmp_path / "link.tif", tmp_path / "hard.tif"):
        with pytest.raises(InputError, match=r"--optical .*a.tif and --output .* are the same file; give each its "
                                             r"own file name"):
            check_paths([PathArgument("--optical", data / "a.tif"), PathArgument("--output", spelling, OUTPUT)])
    relative = os.path.relpath(data / "a.tif")
    with pytest.raises(InputError, match="same file"):
        check_paths([PathArgument("--dsm", data / "a.tif"), PathArgument("--optical", relative)])


def test_derived_files_count_as_arguments(tmp_path):
    arguments = [PathArgument("--output", tmp_path / "out.tif", OUTPUT),
                 PathArgument("--output", tmp_path / "out.qml", OUTPUT, derived="QGIS style"),
                 PathArgument("--confidence", tmp_path / "out.qml", OUTPUT)]
    with pytest.raises(InputError, match=r"the QGIS style of --output \(.*out.qml\) and --confidence .*out.qml are "
                                         "the same file"):
        check_paths(arguments)


def test_a_repeated_option_and_declared_pairs_may_share_inputs(tmp_path):
    scene = [PathArgument("--optical", tmp_path / "a.tif"), PathArgument("--optical", tmp_path / "a.tif"),
             PathArgument("--val-optical", tmp_path / "a.tif")]
    check_paths(scene, may_share=[("--optical", "--val-optical")])
    with pytest.raises(InputError, match="same file"):
        check_paths(scene)
    with pytest.raises(InputError, match="same file"):  # an output never shares
        check_paths([*scene, PathArgument("--output", tmp_path / "a.tif", OUTPUT)],
                    may_share=[("--optical", "--val-optical"), ("--optical", "--output")])


def test_outputs_must_be_files_in_existing_folders_with_a_known_extension(tmp_path):
    (tmp_path / "folder.tif").mkdir()
    (tmp_path / "file").write_text("x")
    cases = {
        PathArgument("--output", tmp_path / "folder.tif", OUTPUT, suffixes=(".tif",)):
            r"--output .*folder.tif is a folder; give a file name, e.g. .*folder.tif/result.tif",
        PathArgument("--output", tmp_path / "x.png", OUTPUT, suffixes=(".tif", ".tiff"), format="GeoTIFF"):
            r"--output .*x.png has an extension mobanet does not write; give a file name ending in \.tif or "
            r"\.tiff \(GeoTIFF\)",
        PathArgument("--output", tmp_path / "missing" / "x.tif", OUTPUT):
            r"Cannot write --output .*x.tif: folder .*missing does not exist; create it",
        PathArgument("--log-dir", tmp_path / "file", FOLDER):
            r"--log-dir .*file is a file, not a folder; give a folder name",
        PathArgument("--log-dir", tmp_path / "file" / "logs", FOLDER): r"Cannot create --log-dir .*: .*file is a file",
    }
    for argument, message in cases.items():
        with pytest.raises(InputError, match=message):
            check_paths([argument])
    check_paths([PathArgument("--log-dir", tmp_path / "new" / "logs", FOLDER)])  # created later, at commit
    check_paths([PathArgument("--output", tmp_path / "X.TIF", OUTPUT, suffixes=(".tif",))])


def test_read_only_folders_are_refused_even_for_root(tmp_path):
    """A read-only file system refuses root too: os.access says so, and the check names the folder."""
    code = (f"from pathlib import Path; from mobanet.pathcheck import *\n"
            f"for argument in (PathArgument('--output', Path({str(tmp_path / 'ro')!r}) / 'x.tif', OUTPUT),\n"
            f"                 PathArgument('--log-dir', Path({str(tmp_path / 'ro')!r}) / 'logs', FOLDER)):\n"
            f"    try: check_paths([argument])\n"
            f"    except Exception as exc: print(exc)\n")
    done, _ = on_tmpfs(tmp_path / "ro", [sys.executable, "-c", code], readonly=True,
                       env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Cannot write --output {tmp_path / 'ro' / 'x.tif'}: folder {tmp_path / 'ro'} is not " \
                       "writable; choose another folder."
    assert lines[1].startswith(f"Cannot write into --log-dir {tmp_path / 'ro' / 'logs'}: folder") and \
        "is not writable" in lines[1]


def test_messages_name_dialog_fields_under_the_plugin(tmp_path, monkeypatch):
    monkeypatch.setenv(LABELS_VARIABLE, json.dumps({"--output": "Classified output", "--optical": "Optical image"}))
    with pytest.raises(InputError, match=r"the 'Optical image' field .*a.tif and the 'Classified output' field "
                                         ".*a.tif are the same file"):
        check_paths([PathArgument("--optical", tmp_path / "a.tif"), PathArgument("--output", tmp_path / "a.tif",
                                                                                 OUTPUT)])


def test_files_in_a_folder_the_command_creates(tmp_path):
    inside = PathArgument("--log-dir", tmp_path / "new" / "logs" / "history.csv", OUTPUT, derived="log file",
                          new_folder=True)
    check_paths([inside])
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"Cannot write --log-dir .*h.csv: .*file is a file, not a folder"):
        check_paths([PathArgument("--log-dir", tmp_path / "file" / "logs" / "h.csv", OUTPUT, new_folder=True)])


def test_devices_and_temporary_names_are_not_outputs(tmp_path):
    with pytest.raises(InputError, match=r"--json /dev/null is not a regular file \(a device, pipe or socket\)"):
        check_paths([PathArgument("--json", "/dev/null", OUTPUT)])
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InputError, match="not a regular file"):
        check_paths([PathArgument("--report", tmp_path / "pipe", OUTPUT)])
    with pytest.raises(InputError, match=r"has the form of mobanet's temporary files"):
        check_paths([PathArgument("--output", tmp_path / ".x.partial-12.tif", OUTPUT)])
