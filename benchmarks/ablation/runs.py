"""One run of the ablation: a variant trained with one seed on the frozen backbone, then scored."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mobanet.progress import Progress
from mobanet.train import TrainOptions, train

from .data import Corpora
from .scoring import score_model


@dataclass(frozen=True)
class Budget:
    """What every variant gets: the same data, steps and schedule (the knobs under study apart)."""

    epochs: int = 3
    iterations: int = 100
    batch_size: int = 8
    window: int = 168
    lr: float = 1e-3
    warmup_epochs: int = 1


@dataclass(frozen=True)
class Task:
    variant: str
    settings: dict
    seed: int
    budget: Budget
    weights: str
    weights_sha256: str
    folder: str
    threads: int

    def key(self) -> str:
        return json.dumps([self.settings, self.seed, asdict(self.budget), self.weights_sha256], sort_keys=True)


def run_task(task: Task, corpora: Corpora) -> dict:
    """Train one variant with one seed on the frozen pretrained backbone, then score it (in a worker process)."""
    torch.set_num_threads(task.threads)
    started = time.time()
    folder = Path(task.folder)
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / "model.safetensors"
    budget = task.budget
    summary = train(TrainOptions(
        scenes=corpora.train, validation=corpora.validation, output=output, backbone="tiny",
        weights=Path(task.weights), finetune_backbone=False, **task.settings, epochs=budget.epochs,
        iterations=budget.iterations, batch_size=budget.batch_size, window=budget.window, lr=budget.lr,
        warmup_epochs=budget.warmup_epochs, validate_every=budget.epochs, seed=task.seed, device="cpu",
        log_dir=folder / "logs"), Progress("quiet"))
    trained = time.time()
    test = score_model(output, Path(task.weights), corpora.test)
    return {"key": task.key(), "variant": task.variant, "settings": task.settings, "seed": task.seed,
            "trainable": summary["trainable_parameters"], "total": summary["total_parameters"],
            "validation": summary["modality_scores"], "test": test,
            "train_minutes": round((trained - started) / 60, 2), "minutes": round((time.time() - started) / 60, 2)}
