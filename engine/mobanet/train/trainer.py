"""Fine-tuning MoBaNet on labelled scenes: the training loop behind `mobanet train`.

One run, top to bottom:

1. build the network (or start from a model file, ``init``) and its model card;
2. open every scene through `open_scene` and its labels through `read_labels`
   on the scene grid; validation scenes are given, or a strip of each
   training scene is held out (``holdout``);
3. each epoch: ``iterations`` optimiser steps on random windows
   (`WindowSampler`, read one batch ahead in a thread), MCRM on dual-stream
   batches, AdamW with warm-up + cosine (`WarmupCosine`), bf16 autocast on
   CUDA;
4. validate with `predict_array`, the tiled inference of ``mobanet segment``,
   and score with `metrics.scores` (mIoU over the classes without clutter);
5. write the best model to ``output``, the last one to
   ``<stem>.last.safetensors`` and the resume state to
   ``<stem>.state.safetensors``; log the epoch (`TrainingLog`).

Under ``torchrun`` every rank trains on its own windows and DDP averages the
gradients; only rank 0 validates and writes. On the CPU a run is
reproducible from its seed, and ``resume`` continues an interrupted run
exactly where its last epoch ended.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mobanet.card import ModelCard
from mobanet.classes import IGNORE_INDEX, ISPRS_CLASSES
from mobanet.errors import InputError
from mobanet.fileutil import OutputSet
from mobanet.labels import read_labels
from mobanet.metrics import confusion_matrix, scores
from mobanet.model import PROFILES, MoBaNet, MoBaNetConfig, MoBaNetLoss, build_model, mask_modalities
from mobanet.modelfile import load_model, read_card, save_model
from mobanet.progress import Progress
from mobanet.raster import Scene, native_bf16, open_scene, predict_array
from mobanet.raster.predict import max_window, resolve_window
from mobanet.raster.scene import coverage_warning
from mobanet.train.distributed import DistributedContext, setup_distributed
from mobanet.train.files import RunPaths, check_run_paths, resume_paths
from mobanet.train.logs import TrainingLog
from mobanet.train.run_progress import TrainingProgress, validation_windows
from mobanet.train.sampling import TrainingScene, WindowSampler, holdout_regions
from mobanet.train.schedule import WarmupCosine, build_optimizer
from mobanet.train.state import load_state, save_state
from mobanet.wording import option, option_list

MCRM_MODES = ("local", "full", "none")
STATE_FORMAT = 1


@dataclass
class SceneFiles:
    """One labelled scene: co-registered optical raster and DSM, and labels (raster or polygons)."""

    optical: Path
    dsm: Path
    labels: Path
    class_field: str | None = None  # attribute holding the class of vector labels


@dataclass
class TrainOptions:
    """Everything one training run needs; defaults follow the authors' recipe (SPEC section 2)."""

    scenes: list[SceneFiles]
    output: Path
    validation: list[SceneFiles] = field(default_factory=list)
    holdout: float = 0.2  # without validation scenes: this share of each scene (a right-hand strip) validates
    # network
    backbone: str = "tiny"
    weights: Path | None = None
    pretrained: bool = False
    profile: str = "mobanet"  # or "reference": the authors' released layout (mobanet.model.profiles)
    cpia: str | None = None  # None: the profile's form
    fusion: str = "gated"
    streams: str = "dual"
    finetune_backbone: bool = False
    feature_pyramid: bool = False
    init: Path | None = None  # start from this model file (its configuration and classes win)
    # MCRM and loss
    mcrm: str = "local"
    mcrm_ratio: float = 0.25
    aux_weight: float = 0.01
    # schedule
    epochs: int = 50
    iterations: int = 1000
    batch_size: int = 24  # per process under torchrun
    accumulate: int = 1
    window: int | None = None  # training = validation = inference window; None: the card's (ModelCard.window)
    lr: float = 2e-4
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    min_lr: float = 1e-6
    # sampling
    min_labelled: float = 0.5
    class_balanced: bool = False
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    # run control and outputs
    resume: Path | None = None  # a <stem>.state.safetensors (or the output model beside it)
    early_stopping: int | None = None  # stop after this many validations without a better mIoU
    full_checkpoint: bool = False
    log_dir: Path | None = None
    validate_every: int = 1
    # model card overrides
    class_names: list[str] | None = None
    class_colors: list[tuple[int, int, int]] | None = None
    bands: list[int] | None = None
    gsd: float | None = None
    command: str | None = None  # the command line, recorded in the model card


@dataclass
class ValidationScene:
    """A block to score after each epoch: its scene (or crop) and its labels on the same grid."""

    scene: Scene
    labels: np.ndarray
    name: str


class TrainingForward(nn.Module):
    """``forward`` = `MoBaNet.forward_train`, so DDP's gradient hooks see the training pass."""

    def __init__(self, model: MoBaNet):
        super().__init__()
        self.model = model

    def forward(self, optical: torch.Tensor, dsm: torch.Tensor) -> dict[str, torch.Tensor | None]:
        return self.model.forward_train(optical, dsm)


def check_options(options: TrainOptions) -> None:
    """Refuse impossible settings and clashing paths up front, each with the option to change."""
    if not options.scenes:
        raise InputError(f"No training scene given; give {option_list('--optical', '--dsm', '--labels')} "
                         "(once per scene).")
    numbers = {"--epochs": options.epochs, "--iterations": options.iterations, "--batch-size": options.batch_size,
               "--accumulate": options.accumulate, "--validate-every": options.validate_every}
    for name, value in numbers.items():
        if value < 1:
            raise InputError(f"{option(name)} must be at least 1, got {value}.")
    if options.window is not None and not 28 <= options.window <= max_window(14):
        raise InputError(f"{option('--window')} {options.window} is out of range; use 28 to {max_window(14)} px "
                         "(266 is the default).")
    if not 0.0 <= options.holdout < 0.9:
        raise InputError(f"{option('--holdout')} {options.holdout} must be in [0, 0.9); 0.2 holds out a fifth of "
                         "each scene.")
    if options.mcrm not in MCRM_MODES:
        raise InputError(f"{option('--mcrm')} {options.mcrm!r} is not one of {', '.join(MCRM_MODES)}.")
    for name, value in (("--mcrm-ratio", options.mcrm_ratio), ("--min-labelled", options.min_labelled)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{option(name)} must be between 0 and 1, got {value}.")
    if options.lr <= 0 or options.min_lr < 0 or options.min_lr > options.lr:
        raise InputError(f"Learning rates must satisfy 0 <= {option('--min-lr')} <= {option('--lr')} and "
                         f"{option('--lr')} > 0 (got {options.lr} and {options.min_lr}).")
    if options.early_stopping is not None and options.early_stopping < 1:
        raise InputError(f"{option('--early-stopping')} must be at least 1 validation, got {options.early_stopping}.")
    if options.class_colors is not None and options.class_names is not None and \
            len(options.class_colors) != len(options.class_names):
        raise InputError(f"{len(options.class_names)} class names but {len(options.class_colors)} class colours; "
                         "give one colour per class.")
    check_run_paths(options)


def _file_entry(files: SceneFiles) -> dict[str, str | None]:
    return {"optical": str(Path(files.optical).resolve()), "dsm": str(Path(files.dsm).resolve()),
            "labels": str(Path(files.labels).resolve()), "class_field": files.class_field}


def _summary_scores(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a `scores` result (what the log, the card and the plugin show)."""
    def number(value: Any) -> float | None:
        return None if value is None or not math.isfinite(float(value)) else float(value)

    per_class = result.get("per_class") or {}
    headline = {key: number(result.get(key)) for key in ("overall_accuracy", "mf1", "miou", "miou_all", "kappa")}
    headline["per_class_iou"] = {name: number(values.get("iou")) for name, values in per_class.items()}
    return headline


class Trainer:
    """One training run (see module docstring); `run` returns the summary."""

    def __init__(self, options: TrainOptions, progress: Progress, context: DistributedContext):
        check_options(options)
        self.options, self.progress, self.context = options, progress, context
        self.device = context.device
        self.paths = RunPaths.for_output(Path(options.output), options.log_dir)
        self.resume_from = resume_paths(Path(options.resume)) if options.resume else None

        torch.manual_seed(options.seed)  # the same initial network on every rank
        self.model, self.card = self._build_model()
        self.card.window = resolve_window(options.window, self.card, self.model.patch_size)  # one window everywhere
        self.model.to(self.device)
        rank_seed = np.random.SeedSequence([options.seed, context.rank, 1]).generate_state(1)[0]
        torch.manual_seed(int(rank_seed))  # dropout differs between ranks, reproducibly
        self.mask_generator = torch.Generator().manual_seed(int(rank_seed) + 1)

        train_scenes, self.validation = self._open_data()
        self.sampler = WindowSampler(train_scenes, self.card.window, options.min_labelled, options.class_balanced,
                                     options.seed, context.rank)
        self.optimizer = build_optimizer(self.model, options.lr, options.weight_decay)
        self.schedule = WarmupCosine(self.optimizer, options.lr, options.min_lr,
                                     options.warmup_epochs * options.iterations, options.epochs * options.iterations)
        self.loss = MoBaNetLoss(options.aux_weight)
        self.masking = options.mcrm != "none" and self.model.config.dual
        self.autocast = options.amp and native_bf16(self.device)  # no fp16: it would need loss scaling

        self.epoch = 0
        self.best: dict[str, Any] = {"miou": None, "epoch": None, "scores": None}
        self.stale_validations = 0
        if self.resume_from:
            self._load_resume_state()
        forward = TrainingForward(self.model)
        if context.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            forward = DistributedDataParallel(forward, device_ids=device_ids)
        self.forward = forward
        self.log = TrainingLog(self.paths.log_dir, self.card.class_names) if context.is_main else None
        if self.log is not None and self.resume_from:
            self.log.resume(self.epoch)
        self.run_progress = TrainingProgress.for_run(progress if context.is_main else None, options,
                                                     validation_windows(self.validation, self.card.window), self.epoch)

    # -- set-up -------------------------------------------------------------------------
    def _build_model(self) -> tuple[MoBaNet, ModelCard]:
        options = self.options
        if options.init is not None:
            model, card = load_model(options.init, weights=options.weights, pretrained=options.pretrained)
            if options.class_names and list(options.class_names) != card.class_names:
                raise InputError(f"The classes given ({options.class_names}) differ from those of {options.init} "
                                 f"({card.class_names}); drop the class list or start without {option('--init')}.")
            card.training = {"initialised_from": str(Path(options.init).resolve())}
            card.name = self.paths.best.name.removesuffix(".safetensors")
            return model, card
        names = list(options.class_names) if options.class_names else [c.name for c in ISPRS_CLASSES]
        if options.class_colors is not None:
            colors = [tuple(int(v) for v in c) for c in options.class_colors]
        elif len(names) <= len(ISPRS_CLASSES) and names == [c.name for c in ISPRS_CLASSES][:len(names)]:
            colors = [c.color for c in ISPRS_CLASSES][:len(names)]
        else:
            raise InputError(f"Classes {names} are not the ISPRS classes; give their colours too (class_colors).")
        config = MoBaNetConfig(backbone=options.backbone, num_classes=len(names), profile=options.profile,
                               cpia=options.cpia, fusion=options.fusion, streams=options.streams,
                               finetune_backbone=options.finetune_backbone, feature_pyramid=options.feature_pyramid)
        model = build_model(config, weights=options.weights, pretrained=options.pretrained)
        card = ModelCard(name=self.paths.best.name.removesuffix(".safetensors"), class_names=names, class_colors=colors,
                         gsd=options.gsd, dsm_normalization=replace(PROFILES[config.profile].dsm_normalization))
        if options.bands:
            card.optical_bands = list(options.bands)
        return model, card

    def _open_labelled(self, files: SceneFiles) -> tuple[Scene, np.ndarray]:
        scene = open_scene(files.optical, files.dsm, self.card)
        if self.context.is_main:
            for note in scene.notes:
                self.progress.info(note)
            if (warning := coverage_warning(scene)) is not None:
                self.progress.warning(warning)
        labels = read_labels(files.labels, scene, self.card.class_names, self.card.class_colors, files.class_field)
        if labels.shape != (scene.height, scene.width):
            raise InputError(f"Labels {files.labels} give a {labels.shape[1]} x {labels.shape[0]} grid but the "
                             f"scene {files.optical} is {scene.width} x {scene.height}; give labels on the optical "
                             "raster's grid.")
        if not np.any(labels != IGNORE_INDEX):
            raise InputError(f"Labels {files.labels} hold no labelled pixel over {files.optical} (all nodata/255); "
                             "check that the labels cover the scene and use the model's classes.")
        return scene, labels

    def _open_data(self) -> tuple[list[TrainingScene], list[ValidationScene]]:
        """Training scenes with their sampling regions, and the validation blocks (rank 0 only scores them)."""
        options = self.options
        holdout = 0.0 if options.validation else options.holdout
        training, validation = [], []
        for files in options.scenes:
            scene, labels = self._open_labelled(files)
            region, strip = holdout_regions(scene.width, scene.height, holdout)
            item = TrainingScene(scene, labels, region, str(files.labels))
            if item.labelled_pixels() == 0:
                self.progress.warning(f"{files.labels}: no labelled pixel outside the held-out strip; the scene "
                                      "is used for validation only.")
            else:
                training.append(item)
            if strip is not None:
                rows, cols = strip.slices()
                validation.append(ValidationScene(scene.crop(strip.x, strip.y, strip.width, strip.height),
                                                  labels[rows, cols], f"{files.labels} (held-out strip)"))
        if not training:
            given_apart = option_list("--val-optical", "--val-dsm", "--val-labels")
            raise InputError(f"No labelled pixel is left for training after the hold-out; lower "
                             f"{option('--holdout')} or give validation scenes with {given_apart}.")
        for files in options.validation:
            scene, labels = self._open_labelled(files)
            validation.append(ValidationScene(scene, labels, str(files.labels)))
        validation = [v for v in validation if np.any(v.labels != IGNORE_INDEX)]
        if not validation and (options.validation or holdout > 0):
            self.progress.warning("The validation blocks hold no labelled pixel: nothing is validated and the output "
                                  f"is the last epoch's model. Give validation scenes or change {option('--holdout')}.")
        return training, validation

    # -- one epoch ------------------------------------------------------------------------
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next training batch on the CPU, MCRM applied (dual-stream variants)."""
        optical, dsm, labels = self.sampler.batch(self.options.batch_size)
        if self.masking:
            optical, dsm, _ = mask_modalities(optical, dsm, self.options.mcrm_ratio, self.options.mcrm,
                                              self.mask_generator)
        return optical, dsm, labels

    def _read_ahead(self, count: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``count`` batches, each read in a background thread while the previous one trains.

        One reader, strictly in order, so the windows (and the sampler and
        masking generator states at the end of the epoch) are the same as
        when reading in the loop.
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mobanet-windows") as pool:
            pending = pool.submit(self._batch)
            for index in range(count):
                batch = pending.result()
                if index + 1 < count:
                    pending = pool.submit(self._batch)
                yield batch

    def optimise(self, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[float, int, int]:
        """One optimiser step, gradients accumulated over ``batches``: (mean loss, correct, labelled pixels)."""
        losses, correct, labelled = [], 0, 0
        for index, (optical, dsm, labels) in enumerate(batches):
            optical, dsm, labels = (t.to(self.device, non_blocking=True) for t in (optical, dsm, labels))
            last = index == len(batches) - 1
            sync = self.forward.no_sync() if self.context.enabled and not last else contextlib.nullcontext()
            with sync:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    outputs = self.forward(optical, dsm)
                    loss, parts = self.loss(outputs, labels)
                (loss / len(batches)).backward()
            if not math.isfinite(parts["loss"]):
                raise InputError(f"The training loss became {parts['loss']} at epoch {self.epoch + 1}; training "
                                 f"diverged. Lower {option('--lr')} (or use {option('--no-amp')}) and start again.")
            losses.append(parts["loss"])
            with torch.no_grad():
                mask = labels != IGNORE_INDEX
                correct += int((outputs["logits"].argmax(1) == labels)[mask].sum())
                labelled += int(mask.sum())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        return float(np.mean(losses)), correct, labelled

    def _train_epoch(self) -> dict[str, float]:
        options = self.options
        self.model.train()
        lr = self.schedule.current()
        losses, correct, labelled = [], 0, 0
        self.run_progress.start_epoch(self.epoch + 1)
        batches = self._read_ahead(options.iterations * options.accumulate)
        try:
            for _ in range(options.iterations):
                loss, hits, count = self.optimise([next(batches) for _ in range(options.accumulate)])
                losses.append(loss)
                correct, labelled = correct + hits, labelled + count
                self.run_progress.step(loss, self.schedule.current())
        finally:
            batches.close()
        return {"loss": self.context.mean(float(np.mean(losses))),
                "train_oa": self.context.mean(correct / max(labelled, 1)), "lr": lr}

    def validate(self) -> dict[str, Any] | None:
        """Scores of the current network on the validation blocks (tiled inference as in `segment`)."""
        if not self.validation:
            return None
        count = self.card.num_classes
        matrix = np.zeros((count, count), dtype=np.int64)
        for item in self.validation:
            classes, _ = predict_array(self.model, self.card, item.scene, window=self.card.window,
                                       batch_size=self.options.batch_size, device=str(self.device),
                                       progress=self.run_progress.validation(self.epoch))
            matrix += confusion_matrix(classes, item.labels, count)
        self.model.train()
        return scores(matrix, self.card.class_names, self.card.mean_class_indices())

    # -- files ----------------------------------------------------------------------------
    def _card_training(self) -> dict[str, Any]:
        options = self.options
        return {**self.card.training,
                "data": [_file_entry(s) for s in options.scenes],
                "validation": [_file_entry(s) for s in options.validation] if options.validation
                else {"holdout": options.holdout, "strip": "right-hand side of each training scene"},
                "epochs": options.epochs, "epochs_run": self.epoch, "iterations": options.iterations,
                "batch_size": options.batch_size, "accumulate": options.accumulate, "processes":
                self.context.world_size, "window": self.card.window, "lr": options.lr,
                "weight_decay": options.weight_decay, "warmup_epochs": options.warmup_epochs,
                "mcrm": options.mcrm if self.masking else "none", "mcrm_ratio": options.mcrm_ratio,
                "aux_weight": options.aux_weight, "class_balanced": options.class_balanced,
                "min_labelled": options.min_labelled, "seed": options.seed,
                "best_epoch": self.best["epoch"], "best_metrics": self.best["scores"], "command": options.command}

    def _save_model(self, path: Path, outputs: OutputSet) -> None:
        self.card.training = self._card_training()
        save_model(path, self.model, self.card, full=self.options.full_checkpoint, outputs=outputs)

    def _rank_state(self) -> dict[str, Any]:
        state = {"torch_rng": torch.get_rng_state(), "mask_rng": self.mask_generator.get_state(),
                 "sampler": self.sampler.state_dict()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _state(self, ranks: list[dict[str, Any]]) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "epoch": self.epoch, "best": self.best,
                "stale_validations": self.stale_validations, "config": self.model.config.to_dict(),
                "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), "ranks": ranks}

    def _load_resume_state(self) -> None:
        state_path, last_path = self.resume_from
        state = load_state(state_path)
        if state.get("format") != STATE_FORMAT:
            raise InputError(f"Resume state {state_path} has format {state.get('format')}; this engine reads "
                             f"format {STATE_FORMAT}. Start the training again.")
        if state["config"] != self.model.config.to_dict():
            raise InputError(f"Resume state {state_path} belongs to a different network ({state['config']}); "
                             "resume with the options of the interrupted run.")
        if len(state["ranks"]) != self.context.world_size:
            raise InputError(f"Resume state {state_path} was written by {len(state['ranks'])} process(es); resume "
                             f"with the same number (now {self.context.world_size}).")
        if read_card(last_path).class_names != self.card.class_names:
            raise InputError(f"{last_path} predicts other classes than this run; resume with the same classes.")
        with safe_open(str(last_path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        expected = self.model.state_dict()
        unknown = sorted(set(tensors) - set(expected))
        missing = sorted(k for k in set(expected) - set(tensors) if not k.startswith("backbone."))
        if unknown or missing:
            raise InputError(f"{last_path} does not fit this run's network (unknown {unknown[:3]}, missing "
                             f"{missing[:3]}); resume with the options of the interrupted run.")
        self.model.load_state_dict(tensors, strict=False)
        optimizer_state = state["optimizer"]
        for group in optimizer_state["param_groups"]:
            group["betas"] = tuple(group["betas"])
        self.optimizer.load_state_dict(optimizer_state)
        self.schedule.load_state_dict(state["schedule"])
        self.epoch, self.best = int(state["epoch"]), state["best"]
        self.stale_validations = int(state["stale_validations"])
        mine = state["ranks"][self.context.rank]
        torch.set_rng_state(mine["torch_rng"])
        self.mask_generator.set_state(mine["mask_rng"])
        self.sampler.load_state_dict(mine["sampler"])
        if "cuda_rng" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"], self.device)
        if self.epoch >= self.options.epochs:
            raise InputError(f"{state_path} already finished {self.epoch} of {self.options.epochs} epochs; raise "
                             f"{option('--epochs')} to train longer.")

    # -- the run --------------------------------------------------------------------------
    def _end_of_epoch(self, row: dict[str, Any], validated: dict[str, Any] | None, ranks: list[dict[str, Any]],
                      started: float) -> dict[str, Any]:
        """Rank 0: commit the epoch's files together (best model when better, last, state, log); its log row."""
        improved = False
        if validated is not None:
            headline = _summary_scores(validated)
            row.update(headline)
            miou = headline["miou"]
            improved = miou is not None and (self.best["miou"] is None or miou > self.best["miou"])
            if improved:
                self.best = {"miou": miou, "epoch": self.epoch, "scores": headline}
                self.stale_validations = 0
            else:
                self.stale_validations += 1
        row = {"epoch": self.epoch, **row, "seconds": round(time.perf_counter() - started, 3)}
        with OutputSet() as outputs:
            if improved or not self.validation:  # without validation the output is the latest model
                self._save_model(self.paths.best, outputs)
            self._save_model(self.paths.last, outputs)
            save_state(self.paths.state, self._state(ranks), outputs)
            self.log.append(row, outputs)
        return row

    def run(self) -> dict[str, Any]:
        options, context = self.options, self.context
        report = self.model.parameter_report()["all"]
        if context.is_main:
            self.progress.info(f"Training {self.model.config.backbone} MoBaNet ({report['trainable']:,} of "
                               f"{report['total']:,} parameters trainable) on {len(self.sampler.scenes)} scene(s), "
                               f"{len(self.validation)} validation block(s), device {self.device}"
                               f"{' (bf16 autocast)' if self.autocast else ''}, {context.world_size} process(es).")
        stopped_early = False
        try:
            while self.epoch < options.epochs and not stopped_early:
                started = time.perf_counter()
                row = self._train_epoch()
                self.epoch += 1
                validated = self.validate() if context.is_main and self.run_progress.validates(self.epoch) else None
                ranks = context.gather(self._rank_state())
                if context.is_main:
                    row = self._end_of_epoch(row, validated, ranks, started)
                    stopped_early = (options.early_stopping is not None
                                     and self.stale_validations >= options.early_stopping)
                    self.progress.metrics(epochs=options.epochs, best_miou=self.best["miou"], **row)
                stopped_early = context.broadcast(stopped_early)
                context.barrier()
            self.run_progress.finish()
        finally:
            self.run_progress.close()
            if self.log is not None:
                self.log.close()
        if stopped_early and context.is_main:
            self.progress.info(f"Early stopping after epoch {self.epoch}: no better validation mIoU for "
                               f"{options.early_stopping} validation(s); best epoch {self.best['epoch']}.")
        return {"output": str(self.paths.best), "last": str(self.paths.last), "state": str(self.paths.state),
                "log_dir": str(self.paths.log_dir), "best_miou": self.best["miou"], "best_epoch": self.best["epoch"],
                "best_metrics": self.best["scores"], "epochs_run": self.epoch, "stopped_early": stopped_early,
                "trainable_parameters": report["trainable"], "total_parameters": report["total"],
                "processes": context.world_size, "distributed_backend": context.backend}


def train(options: TrainOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Train (or fine-tune) a MoBaNet as ``options`` say; the summary of the run (see `Trainer.run`)."""
    progress = progress if progress is not None else Progress("quiet")
    context = setup_distributed(options.device)
    try:
        return Trainer(options, progress, context).run()
    finally:
        context.close()
