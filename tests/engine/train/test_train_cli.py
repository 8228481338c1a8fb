"""`mobanet train` from the command line: JSON progress, argument errors, and DDP under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mobanet.cli import main


def scene_arguments(scenes) -> list[str]:
    arguments = []
    for files in scenes:
        arguments += ["--optical", str(files.optical), "--dsm", str(files.dsm), "--labels", str(files.labels)]
    return arguments


TINY = ["--backbone", "tiny", "--epochs", "2", "--iterations", "2", "--batch-size", "2", "--window", "42",
        "--warmup-epochs", "1", "--lr", "1e-3", "--device", "cpu"]


def events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cli_json_progress_gives_metrics_per_epoch_and_a_result(synthetic, tmp_path, capsys):
    output = tmp_path / "cli.safetensors"
    code = main(["train", *scene_arguments(synthetic[:2]), "--output", str(output), *TINY, "--json-progress"])
    lines = events(capsys.readouterr().out)
    assert code == 0
    metrics = [e for e in lines if e["event"] == "metrics"]
    assert [m["epoch"] for m in metrics] == [1, 2] and all("miou" in m and "loss" in m for m in metrics)
    assert any(e["event"] == "progress" for e in lines)
    assert lines[-1]["event"] == "result" and lines[-1]["output"] == str(output)
    assert output.is_file() and (tmp_path / "cli_logs" / "history.csv").is_file()


def test_cli_mismatched_scene_options_are_a_clear_error(synthetic, tmp_path, capsys):
    arguments = scene_arguments(synthetic[:2])[:-2]  # the second --labels is missing
    code = main(["train", *arguments, "--output", str(tmp_path / "m.safetensors"), *TINY, "--json-progress"])
    last = events(capsys.readouterr().out)[-1]
    assert code == 2 and last["event"] == "error" and last["kind"] == "InputError"
    assert "2 --optical, 2 --dsm and 1 --labels" in last["message"]


def test_two_process_gloo_run_writes_exactly_one_checkpoint_set(synthetic, tmp_path):
    output = tmp_path / "ddp.safetensors"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
               "-m", "mobanet", "train", *scene_arguments(synthetic[:2]), "--output", str(output), *TINY,
               "--epochs", "1", "--json-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [e for e in events(done.stdout) if e["event"] == "result"]
    assert len(results) == 1 and results[0]["processes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ddp.last.safetensors", "ddp.safetensors", "ddp.state.safetensors", "ddp_logs"]
    rows = json.loads((tmp_path / "ddp_logs" / "history.json").read_text())
    assert [r["epoch"] for r in rows] == [1]


def test_cli_masking_and_auxiliary_loss_options_reach_the_model(synthetic, tmp_path, capsys):
    from mobanet.modelfile import load_model

    output = tmp_path / "full.safetensors"  # every knob away from its default
    code = main(["train", *scene_arguments(synthetic[:1]), "--output", str(output), *TINY, "--epochs", "1",
                 "--mcrm", "full", "--mcrm-ratio", "0.3", "--no-aux-loss", "--no-feature-pyramid", "--json-progress"])
    assert code == 0, capsys.readouterr().out[-2000:]
    model, card = load_model(output)
    assert card.training["mcrm"] == "full" and card.training["mcrm_ratio"] == 0.3
    assert card.training["aux_heads"] is False and card.config["aux_heads"] is False
    assert not hasattr(model, "aux_heads") and not hasattr(model, "pyramid")


def test_the_feature_pyramid_default_follows_the_profile():
    """On for our profile (the ablation's choice); the authors' layout has none, so `--profile reference` works
    without `--no-feature-pyramid`; an explicit choice wins."""
    from mobanet.model import MoBaNetConfig
    from mobanet.train import TrainOptions
    from mobanet.train.options import feature_pyramid_for

    base = dict(scenes=[], output=Path("m.safetensors"))
    assert feature_pyramid_for(TrainOptions(**base)) is True
    reference = TrainOptions(**base, profile="reference")
    assert feature_pyramid_for(reference) is False
    MoBaNetConfig(profile="reference", feature_pyramid=feature_pyramid_for(reference))  # accepted
    assert feature_pyramid_for(TrainOptions(**base, feature_pyramid=False)) is False


def test_cli_defaults_are_the_trainers():
    """`mobanet train` shows and uses TrainOptions' defaults (one source for CLI, Python and the ablation)."""
    import argparse

    from mobanet.commands import train as command
    from mobanet.train import TrainOptions

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(), [])
    args = parser.parse_args(["train", "--optical", "a", "--dsm", "b", "--labels", "c", "--output", "m"])
    defaults = TrainOptions(scenes=[], output=Path("m"))
    for name in ("mcrm", "mcrm_ratio", "aux_weight", "feature_pyramid", "epochs", "iterations", "batch_size",
                 "window", "lr"):
        assert getattr(args, name) == getattr(defaults, name), name
    assert args.aux_loss == defaults.aux_heads
