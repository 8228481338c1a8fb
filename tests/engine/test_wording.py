"""Messages name options in the words of the interface: flags at the command line, field labels under QGIS."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from mobanet.wording import LABELS_VARIABLE, option, option_list

from .raster.conftest import synthetic_pair, write_raster

ENGINE = Path(__file__).resolve().parents[2] / "engine" / "mobanet"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
PLUGIN_LABELS = {"--optical": "Optical image", "--dsm": "Surface model (DSM)", "--bands": "Bands"}


def test_flags_at_the_command_line_and_field_labels_under_the_plugin(monkeypatch):
    monkeypatch.delenv(LABELS_VARIABLE, raising=False)
    assert option("--weights") == "--weights"
    assert option_list("--optical", "--dsm", "--labels") == "--optical, --dsm and --labels"
    monkeypatch.setenv(LABELS_VARIABLE, json.dumps({"--weights": "Backbone weights file", "--dsm": "DSM layer"}))
    assert option("--weights") == "the 'Backbone weights file' field"
    assert option("--window") == "--window"  # an option the dialog does not show keeps its flag
    assert option_list("--optical", "--dsm") == "--optical and the 'DSM layer' field"
    for broken in ("not json", "[1, 2]", '{"--weights": 3}'):
        monkeypatch.setenv(LABELS_VARIABLE, broken)
        assert option("--weights") == "--weights"


def _message_strings(node: ast.AST) -> list[str]:
    """String constants in a message expression, except the flags handed to option()/option_list()."""
    wrapped = {id(arg) for sub in ast.walk(node) if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)
               and sub.func.id in ("option", "option_list") for arg in sub.args}
    return [sub.value for sub in ast.walk(node)
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and id(sub) not in wrapped]


def test_no_engine_message_writes_a_flag_itself():
    """Errors and warnings name options through `option`, so the plugin can put its field labels there."""
    offenders = []
    for path in sorted(ENGINE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            message = None
            if isinstance(node, ast.Raise) and node.exc is not None:
                message = node.exc
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("warning", "info", "error"):
                message = node
            elif isinstance(node, ast.FunctionDef) and node.name.endswith("_message"):
                message = node.body[-1]
            if message is not None:
                offenders += [f"{path.name}:{node.lineno}: {text!r}" for text in _message_strings(message)
                              if FLAG.search(text)]
    assert offenders == []


def _segment(tmp_path: Path, labels: dict | None) -> dict:
    optical, dsm = synthetic_pair(64)
    o = write_raster(tmp_path / "o.tif", optical)
    d = write_raster(tmp_path / "d.tif", np.stack([dsm] * 3))  # three bands: looks like an optical image
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(LABELS_VARIABLE, None)
    if labels is not None:
        env[LABELS_VARIABLE] = json.dumps(labels)
    done = subprocess.run([sys.executable, "-m", "mobanet", "segment", "--json-progress", "--optical", str(o),
                           "--dsm", str(d), "--output", str(tmp_path / "out.tif")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_one_engine_message_in_both_interfaces(tmp_path):
    at_cli = _segment(tmp_path, None)
    assert at_cli["message"].endswith("Did you swap --optical and --dsm?")
    in_qgis = _segment(tmp_path, PLUGIN_LABELS)
    assert in_qgis["message"].endswith("Did you swap the 'Optical image' field and the 'Surface model (DSM)' field?")
    assert "d.tif" in in_qgis["message"] and "--" not in in_qgis["message"]
