"""`mobanet info`: a model file's card, and parameter counts for a backbone without its weights."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys

import pytest

from mobanet.card import ModelCard
from mobanet.commands import info
from mobanet.errors import InputError
from mobanet.model import MoBaNetConfig, build_model
from mobanet.modelfile import save_model
from mobanet.progress import Progress


def run_info(argv: list[str], mode: str = "quiet") -> dict:
    parser = argparse.ArgumentParser(prog="mobanet")
    info.register(parser.add_subparsers(dest="command"), parents=[])
    args = parser.parse_args(["info", *argv])
    return args.run(args, Progress(mode))


def test_backbone_counts_for_vit_large_as_json(capsys):
    result = run_info(["--backbone", "dinov2_vitl14", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    assert printed["parts"]["backbone"] == {"trainable": 0, "total": 304_367_616}
    assert 8e6 < printed["trainable"] < 12e6
    assert printed["total"] == printed["trainable"] + 304_367_616
    assert set(printed["parts"]) >= {"dsm_patch_embed", "cpia", "fusion", "projection", "head", "aux_heads"}


def test_backbone_counts_follow_the_variant(capsys):
    dual = run_info(["--backbone", "tiny", "--json"])
    single = run_info(["--backbone", "tiny", "--json", "--streams", "optical"])
    finetuned = run_info(["--backbone", "tiny", "--json", "--finetune-backbone"])
    assert single["trainable"] < dual["trainable"] and "cpia" not in single["parts"]
    assert finetuned["trainable"] == finetuned["total"] == dual["total"]


def test_model_file_table(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    scores = {"both": {"miou": 0.8}, "dsm_absent": {"miou": 0.7}, "optical_absent": {"miou": 0.4}}
    save_model(path, build_model(MoBaNetConfig(num_classes=6)),
               ModelCard(name="demo", training={"epochs": 3}, modality_scores=scores))
    result = run_info([str(path)], mode="tqdm")
    out = capsys.readouterr().out
    assert "name:         demo" in out and "backbone:     tiny" in out and "full)" in out
    assert "validation:   mIoU 0.800 with both inputs, 0.700 without DSM, 0.400 without optical" in out
    assert "building" in out and '"epochs": 3' in out
    assert result["card"]["name"] == "demo" and result["trainable"] > 0


def test_json_progress_mode_leaves_stdout_to_the_result_event(capsys):
    result = run_info(["--backbone", "tiny"], mode="json")
    assert capsys.readouterr().out == "" and result["backbone"] == "tiny"


def test_needs_exactly_one_of_model_and_backbone(tmp_path):
    with pytest.raises(InputError, match="either a model file"):
        run_info([])
    with pytest.raises(InputError, match="either a model file"):
        run_info([str(tmp_path / "m.safetensors"), "--backbone", "tiny"])


def all_commands_present() -> bool:
    from mobanet.cli import COMMANDS

    return all(importlib.util.find_spec(f"mobanet.commands.{name}") for name in COMMANDS)


@pytest.mark.skipif(not all_commands_present(), reason="the other CLI commands are not written yet")
def test_cli_end_to_end(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mobanet", "info", "--backbone", "dinov2_vitl14", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["parts"]["backbone"]["total"] == 304_367_616
    missing = subprocess.run([sys.executable, "-m", "mobanet", "info", str(tmp_path / "none.safetensors")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
