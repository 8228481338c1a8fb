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
4. validate (`mobanet.train.validation`: the tiled inference of
   ``mobanet segment``, mIoU over the classes without clutter);
5. write the best model to ``output``, the last one to
   ``<stem>.last.safetensors`` and the resume state to
   ``<stem>.state.safetensors`` (`mobanet.train.checkpoint`); log the epoch
   (`TrainingLog`);
6. after the last epoch, score the best model with the DSM and with the
   optical image missing, into its card (``modality_scores``).

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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mobanet.card import ModelCard
from mobanet.classes import IGNORE_INDEX, ISPRS_CLASSES
from mobanet.errors import InputError
from mobanet.fileutil import OutputSet
from mobanet.labels import read_labels
from mobanet.model import PROFILES, MoBaNet, MoBaNetConfig, MoBaNetLoss, build_model, mask_modalities
from mobanet.modelfile import load_model
from mobanet.progress import Progress
from mobanet.raster import Scene, native_bf16, open_scene
from mobanet.raster.predict import resolve_window
from mobanet.raster.scene import coverage_warning
from mobanet.train.checkpoint import rank_state, read_tensors, restore, run_state, write_model
from mobanet.train.distributed import DistributedContext, setup_distributed
from mobanet.train.files import RunPaths, resume_paths
from mobanet.train.logs import TrainingLog
from mobanet.train.options import SceneFiles, TrainOptions, check_options, feature_pyramid_for
from mobanet.train.run_progress import TrainingProgress, validation_windows
from mobanet.train.sampling import TrainingScene, WindowSampler, holdout_regions
from mobanet.train.schedule import WarmupCosine, build_optimizer
from mobanet.train.state import save_state
from mobanet.train.validation import ValidationScene, modality_scores, summary_scores, validate
from mobanet.wording import option, option_list


class TrainingForward(nn.Module):
    """``forward`` = `MoBaNet.forward_train`, so DDP's gradient hooks see the training pass."""

    def __init__(self, model: MoBaNet):
        super().__init__()
        self.model = model

    def forward(self, optical: torch.Tensor, dsm: torch.Tensor) -> dict[str, torch.Tensor | None]:
        return self.model.forward_train(optical, dsm)


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
            restore(self, *self.resume_from)
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
                               finetune_backbone=options.finetune_backbone,
                               feature_pyramid=feature_pyramid_for(options),
                               aux_heads=options.aux_heads)
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
        result = validate(self.model, self.card, self.validation, self.options.batch_size, str(self.device),
                          progress=self.run_progress.validation(self.epoch))
        self.model.train()
        return result

    def _score_missing_inputs(self) -> None:
        """Rank 0, after the last epoch: the best model's scores with each input missing, into its card."""
        if self.best["epoch"] is None or self.best["scores"] is None or not self.validation:
            return
        self.progress.info("Scoring the best model on the validation data without the DSM, then without the "
                           "optical image (for its model card).")
        self.model.load_state_dict(read_tensors(self.paths.best), strict=False)
        self.card.modality_scores = modality_scores(self.model, self.card, self.validation,
                                                    self.options.batch_size, str(self.device), self.best["scores"])
        with OutputSet() as outputs:
            write_model(self, self.paths.best, outputs)
        found = self.card.modality_scores
        self.progress.info("Best model (epoch {}): mIoU {:.3f} with both inputs, {:.3f} without the DSM, {:.3f} "
                           "without the optical image.".format(self.best["epoch"], found["both"]["miou"] or 0.0,
                                                              found["dsm_absent"]["miou"] or 0.0,
                                                              found["optical_absent"]["miou"] or 0.0))

    # -- the run --------------------------------------------------------------------------
    def _end_of_epoch(self, row: dict[str, Any], validated: dict[str, Any] | None, ranks: list[dict[str, Any]],
                      started: float) -> dict[str, Any]:
        """Rank 0: commit the epoch's files together (best model when better, last, state, log); its log row."""
        improved = False
        if validated is not None:
            headline = summary_scores(validated)
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
                write_model(self, self.paths.best, outputs)
            write_model(self, self.paths.last, outputs)
            save_state(self.paths.state, run_state(self, ranks), outputs)
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
                ranks = context.gather(rank_state(self))
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
        if context.is_main:
            self._score_missing_inputs()
        context.barrier()
        return {"output": str(self.paths.best), "last": str(self.paths.last), "state": str(self.paths.state),
                "log_dir": str(self.paths.log_dir), "best_miou": self.best["miou"], "best_epoch": self.best["epoch"],
                "best_metrics": self.best["scores"], "modality_scores": self.card.modality_scores or None,
                "epochs_run": self.epoch, "stopped_early": stopped_early,
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
