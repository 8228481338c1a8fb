"""What a training run writes and how an interrupted run continues: model files, card and resume state.

The best and last models are model files (`save_model`) whose card records
the run (`card_training`). The resume state (`run_state`, one entry per rank
from `rank_state`) holds the optimiser, schedule, counters and every random
generator, so `restore` continues exactly where the last epoch ended.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open

from mobanet.errors import InputError
from mobanet.fileutil import OutputSet
from mobanet.modelfile import read_card, save_model
from mobanet.train.options import SceneFiles
from mobanet.train.state import load_state
from mobanet.wording import option

if TYPE_CHECKING:
    from mobanet.train.trainer import Trainer

STATE_FORMAT = 1


def _file_entry(files: SceneFiles) -> dict[str, str | None]:
    return {"optical": str(Path(files.optical).resolve()), "dsm": str(Path(files.dsm).resolve()),
            "labels": str(Path(files.labels).resolve()), "class_field": files.class_field}


def card_training(trainer: Trainer) -> dict[str, Any]:
    """The ``training`` entry of the model card: data, recipe, best epoch and its scores, command."""
    options = trainer.options
    return {**trainer.card.training,
            "data": [_file_entry(s) for s in options.scenes],
            "validation": [_file_entry(s) for s in options.validation] if options.validation
            else {"holdout": options.holdout, "strip": "right-hand side of each training scene"},
            "epochs": options.epochs, "epochs_run": trainer.epoch, "iterations": options.iterations,
            "batch_size": options.batch_size, "accumulate": options.accumulate, "processes":
            trainer.context.world_size, "window": trainer.card.window, "lr": options.lr,
            "weight_decay": options.weight_decay, "warmup_epochs": options.warmup_epochs,
            "mcrm": options.mcrm if trainer.masking else "none", "mcrm_ratio": options.mcrm_ratio,
            "aux_heads": trainer.model.config.aux_heads, "aux_weight": options.aux_weight,
            "class_balanced": options.class_balanced, "min_labelled": options.min_labelled, "seed": options.seed,
            "best_epoch": trainer.best["epoch"], "best_metrics": trainer.best["scores"], "command": options.command}


def write_model(trainer: Trainer, path: Path, outputs: OutputSet) -> None:
    """The trainer's model and card into ``path``, committed with the other ``outputs``."""
    trainer.card.training = card_training(trainer)
    save_model(path, trainer.model, trainer.card, full=trainer.options.full_checkpoint, outputs=outputs)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}


def rank_state(trainer: Trainer) -> dict[str, Any]:
    """This process's random generators and sampler position."""
    state = {"torch_rng": torch.get_rng_state(), "mask_rng": trainer.mask_generator.get_state(),
             "sampler": trainer.sampler.state_dict()}
    if trainer.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(trainer.device)
    return state


def run_state(trainer: Trainer, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "epoch": trainer.epoch, "best": trainer.best,
            "stale_validations": trainer.stale_validations, "config": trainer.model.config.to_dict(),
            "optimizer": trainer.optimizer.state_dict(), "schedule": trainer.schedule.state_dict(), "ranks": ranks}


def restore(trainer: Trainer, state_path: Path, last_path: Path) -> None:
    """Put ``trainer`` back where the run that wrote ``state_path`` and ``last_path`` stopped."""
    state = load_state(state_path)
    if state.get("format") != STATE_FORMAT:
        raise InputError(f"Resume state {state_path} has format {state.get('format')}; this engine reads "
                         f"format {STATE_FORMAT}. Start the training again.")
    if state["config"] != trainer.model.config.to_dict():
        raise InputError(f"Resume state {state_path} belongs to a different network ({state['config']}); "
                         "resume with the options of the interrupted run.")
    if len(state["ranks"]) != trainer.context.world_size:
        raise InputError(f"Resume state {state_path} was written by {len(state['ranks'])} process(es); resume "
                         f"with the same number (now {trainer.context.world_size}).")
    if read_card(last_path).class_names != trainer.card.class_names:
        raise InputError(f"{last_path} predicts other classes than this run; resume with the same classes.")
    tensors = read_tensors(last_path)
    expected = trainer.model.state_dict()
    unknown = sorted(set(tensors) - set(expected))
    missing = sorted(k for k in set(expected) - set(tensors) if not k.startswith("backbone."))
    if unknown or missing:
        raise InputError(f"{last_path} does not fit this run's network (unknown {unknown[:3]}, missing "
                         f"{missing[:3]}); resume with the options of the interrupted run.")
    trainer.model.load_state_dict(tensors, strict=False)
    optimizer_state = state["optimizer"]
    for group in optimizer_state["param_groups"]:
        group["betas"] = tuple(group["betas"])
    trainer.optimizer.load_state_dict(optimizer_state)
    trainer.schedule.load_state_dict(state["schedule"])
    trainer.epoch, trainer.best = int(state["epoch"]), state["best"]
    trainer.stale_validations = int(state["stale_validations"])
    mine = state["ranks"][trainer.context.rank]
    torch.set_rng_state(mine["torch_rng"])
    trainer.mask_generator.set_state(mine["mask_rng"])
    trainer.sampler.load_state_dict(mine["sampler"])
    if "cuda_rng" in mine and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(mine["cuda_rng"], trainer.device)
    if trainer.epoch >= trainer.options.epochs:
        raise InputError(f"{state_path} already finished {trainer.epoch} of {trainer.options.epochs} epochs; raise "
                         f"{option('--epochs')} to train longer.")
