"""Throughput at equal quality: which tiling plan should `mobanet segment` use by default? (`make bench-tiling`)

Every plan of `mobanet.raster.tiling` (Gaussian-blended overlaps from 0 to
0.5, and centre-keeping margins of a fixed number of pixels) classifies the
same held-out synthetic scenes (`mobanet.synth`, seeds from 5000, never
trained on) with each model, and is compared with a dense reference: the
authors' test scheme, windows every 32 px with their logits summed. For each
plan: windows predicted, seconds, mIoU against the labels (five classes
without clutter) and agreement with the dense reference. The default should be
the cheapest plan with at least 99.5 % agreement and at most 0.2 mIoU points
lost against the reference, for every model; the report names it and its
speed-up over the old default (overlap 0.5).

Models: the embedded default model, and a ViT-S/14 MoBaNet whose frozen
backbone is random-init (no pretrained weights can be downloaded here) and
whose trainable parts are trained briefly on CPU on synthetic scenes; it is
trained once and kept in the work folder (``--vits-model`` reuses a file).

Cost is counted in windows (deterministic; time per window is the same for
every plan) and measured in seconds on the CPU. Writes
benchmarks/results/tiling.md and tiling.json.

    .venv/bin/python benchmarks/tiling_study.py [--scenes 4 --size 768] [--workdir out/tiling-study]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobanet.card import ModelCard
from mobanet.classes import IGNORE_INDEX
from mobanet.labels import read_labels
from mobanet.metrics import confusion_matrix, scores
from mobanet.model import MoBaNetConfig, build_model
from mobanet.modelfile import load_model, read_card, save_model
from mobanet.progress import Progress
from mobanet.raster import open_scene
from mobanet.raster.predict import RunStats, WindowPredictor, predict_blocks, resolve_window
from mobanet.raster.tiling import DEFAULT_PLAN, MarginPlan, OverlapPlan, TilingPlan
from mobanet.raster.windows import WindowGrid, axis_starts
from mobanet.resources import default_model_path
from mobanet.synth import write_scenes
from mobanet.train import SceneFiles, TrainOptions, train

RESULTS = Path(__file__).resolve().parent / "results"
TEST_SEED = 5000  # held out: the embedded model trains on 100.., validates on 900.., the sample is 2026
VITS_TRAIN_SEED, VITS_VALIDATION_SEED = 100, 900
REFERENCE_STRIDE = 32
MAX_AGREEMENT_LOSS = 0.005  # the criteria: >= 99.5 % agreement with the dense reference ...
MAX_MIOU_LOSS = 0.002  # ... and at most 0.2 mIoU points lost against it
OLD_DEFAULT = OverlapPlan(0.5)


@dataclass(frozen=True)
class DenseSumPlan:
    """The authors' test scheme: windows every ``stride`` px, logits summed with equal weight."""

    stride: int = REFERENCE_STRIDE

    def grid(self, width: int, height: int, window: int, anchor: tuple[int, int] = (0, 0)) -> WindowGrid:
        return WindowGrid(tuple(axis_starts(width, window, self.stride, anchor[0])),
                          tuple(axis_starts(height, window, self.stride, anchor[1])), window, self.stride)

    def weights(self, window: int) -> np.ndarray:
        return np.ones((window, window), np.float32)

    def summary(self) -> dict[str, Any]:
        return {"overlap": None, "margin": None, "stride": self.stride}


def plan_name(plan: TilingPlan) -> str:
    if isinstance(plan, DenseSumPlan):
        return f"dense reference (stride {plan.stride}, summed)"
    if isinstance(plan, MarginPlan):
        return f"margin {plan.margin} px"
    return f"overlap {plan.overlap:g}"


def study_plans(window: int, overlaps: list[float], margins: list[int]) -> list[TilingPlan]:
    """The plans compared for one window size (margins that leave no centre are dropped)."""
    plans: list[TilingPlan] = [OverlapPlan(o) for o in overlaps]
    plans += [MarginPlan(m) for m in margins if window - 2 * m >= 1]
    return plans


# -- models ------------------------------------------------------------------------------------------------------
def train_vits(work: Path, epochs: int, iterations: int, batch_size: int, window: int) -> Path:
    """A ViT-S/14 MoBaNet on a random-init frozen backbone, its trainable parts trained briefly on CPU."""
    output = work / "vits-random-backbone.safetensors"
    if output.is_file():
        return output
    torch.manual_seed(0)
    start = work / "vits-init.safetensors"
    save_model(start, build_model(MoBaNetConfig(backbone="dinov2_vits14"), random_init=True),
               ModelCard(name="vits-random-backbone", window=window, gsd=0.1), full=True)
    as_files = lambda entries: [SceneFiles(e["optical"], e["dsm"], e["labels"]) for e in entries]  # noqa: E731
    scenes = as_files(write_scenes(work / "vits-train", 4, 512, VITS_TRAIN_SEED, 0.1))
    validation = as_files(write_scenes(work / "vits-validation", 1, 512, VITS_VALIDATION_SEED, 0.1))
    started = time.time()
    checkpoint = work / "vits-training" / "checkpoint.safetensors"  # rewritten every epoch; moved when done
    checkpoint.parent.mkdir(exist_ok=True)
    summary = train(TrainOptions(
        scenes=scenes, validation=validation, output=checkpoint, init=start, epochs=epochs, iterations=iterations,
        batch_size=batch_size, window=window, warmup_epochs=1, lr=1e-3, seed=0, device="cpu",
        full_checkpoint=True, log_dir=work / "vits-logs"), Progress("tqdm"))
    os.replace(checkpoint, output)
    print(f"ViT-S trained in {(time.time() - started) / 60:.1f} min, validation mIoU {summary['best_miou']:.3f}",
          flush=True)
    return output


# -- measuring -----------------------------------------------------------------------------------------------------
def classify(predictor: WindowPredictor, card: ModelCard, scene: Any, window: int, plan: TilingPlan,
             batch_size: int) -> tuple[np.ndarray, RunStats, float]:
    """Classes of a whole scene under ``plan``, the run's statistics and its wall seconds."""
    classes = np.full((scene.height, scene.width), IGNORE_INDEX, np.uint8)
    stats = RunStats()
    started = time.perf_counter()
    for block in predict_blocks(predictor, card.num_classes, scene, window, plan, batch_size, False, None, stats):
        classes[block.y:block.y + block.classes.shape[0]] = block.classes
    return classes, stats, time.perf_counter() - started


def measure_model(label: str, path: Path, test: list[SceneFiles], plans: list[TilingPlan], batch_size: int
                  ) -> dict[str, Any]:
    """Every plan and the dense reference on every test scene: confusion matrices, agreement, windows, seconds."""
    model, card = load_model(path)
    window = resolve_window(None, card, model.patch_size)
    predictor = WindowPredictor(model, torch.device("cpu"), batch_size)
    k = card.num_classes
    reference_plan = DenseSumPlan()
    rows = {plan_name(p): {"plan": p, "cm": np.zeros((k, k), np.int64), "agree": 0, "compared": 0, "windows": 0,
                           "seconds": 0.0} for p in [reference_plan, *plans]}
    for files in test:
        scene = open_scene(files.optical, files.dsm, card)
        labels = read_labels(files.labels, scene, card.class_names, card.class_colors)
        reference = None
        for plan in [reference_plan, *plans]:
            classes, stats, seconds = classify(predictor, card, scene, window, plan, batch_size)
            row = rows[plan_name(plan)]
            row["cm"] += confusion_matrix(classes, labels, k)
            if reference is None:
                reference = classes
            both = (classes != IGNORE_INDEX) & (reference != IGNORE_INDEX)
            row["agree"] += int((classes == reference)[both].sum())
            row["compared"] += int(both.sum())
            row["windows"] += stats.windows_predicted
            row["seconds"] += seconds
            print(f"  {label} {Path(files.optical).name} {plan_name(plan):36s} {stats.windows_predicted:5d} windows "
                  f"{seconds:7.1f} s", flush=True)
        scene.close()
    results = []
    for name, row in rows.items():
        score = scores(row["cm"], card.class_names, card.mean_class_indices())
        results.append({"plan": name, **row["plan"].summary(), "windows": row["windows"],
                        "seconds": round(row["seconds"], 2), "miou": score["miou"], "miou_all": score["miou_all"],
                        "overall_accuracy": score["overall_accuracy"],
                        "agreement": row["agree"] / max(row["compared"], 1)})
    reference_miou = results[0]["miou"]
    old = next(r for r in results if r["plan"] == plan_name(OLD_DEFAULT))
    for r in results:
        r["miou_loss_points"] = round(100 * (reference_miou - r["miou"]), 3)
        r["passes"] = (r["agreement"] >= 1 - MAX_AGREEMENT_LOSS and reference_miou - r["miou"] <= MAX_MIOU_LOSS)
        r["windows_speedup_vs_old_default"] = round(old["windows"] / r["windows"], 3)
        r["time_speedup_vs_old_default"] = round(old["seconds"] / max(r["seconds"], 1e-9), 3)
    return {"model": label, "file": path.name, "backbone": card.backbone, "window": window, "plans": results}


def choose(models: list[dict[str, Any]]) -> str | None:
    """The plan with the fewest windows (summed over models) that passes both criteria for every model."""
    names = [r["plan"] for r in models[0]["plans"][1:]]
    passing = [n for n in names if all(next(r for r in m["plans"] if r["plan"] == n)["passes"] for m in models)]
    windows = {n: sum(next(r for r in m["plans"] if r["plan"] == n)["windows"] for m in models) for n in passing}
    return min(passing, key=lambda n: (windows[n], names.index(n))) if passing else None


# -- report --------------------------------------------------------------------------------------------------------
def write_report(models: list[dict[str, Any]], chosen: str | None, args: argparse.Namespace, command: str,
                 minutes: float) -> None:
    lines = [
        "# Tiling plans: throughput at equal quality", "",
        f"Command: `{command}` ({minutes:.0f} min). CPU: {platform.machine()}, {os.cpu_count()} cores shared with "
        f"other jobs, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}.", "",
        f"Test data: {args.scenes} held-out synthetic scenes of {args.size} px at 0.1 m (`mobanet.synth`, seeds "
        f"{TEST_SEED}..{TEST_SEED + args.scenes - 1}, never trained on). Dense reference: the authors' scheme, "
        f"windows every {REFERENCE_STRIDE} px with summed logits. mIoU over the five classes without clutter. "
        "Agreement: share of pixels with the reference's class. Criteria: agreement >= 99.5 % and at most "
        "0.2 mIoU points below the reference. Cost: windows predicted (deterministic) and wall seconds (the "
        "machine is shared, so seconds are noisy; windows decide).", "",
    ]
    for m in models:
        lines += [f"## {m['model']} (`{m['file']}`, backbone {m['backbone']}, {m['window']} px windows)", "",
                  "| plan | windows | seconds | mIoU | mIoU lost (points) | agreement with reference | passes | "
                  "speed-up vs overlap 0.5 (windows / time) |", "|---|---|---|---|---|---|---|---|"]
        for r in m["plans"]:
            lines.append(f"| {r['plan']} | {r['windows']} | {r['seconds']:.1f} | {100 * r['miou']:.2f} | "
                         f"{r['miou_loss_points']:+.2f} | {100 * r['agreement']:.2f} % | "
                         f"{'yes' if r['passes'] else 'no'} | {r['windows_speedup_vs_old_default']:.2f}x / "
                         f"{r['time_speedup_vs_old_default']:.2f}x |")
        lines.append("")
    lines += ["## Choice", ""]
    if chosen is None:
        lines.append("No plan passes both criteria for every model; the default stays as it is.")
    else:
        speedups = [next(r for r in m["plans"] if r["plan"] == chosen) for m in models]
        lines.append(f"Cheapest plan passing both criteria for every model: **{chosen}**. Speed-up over the old "
                     "default (overlap 0.5, Gaussian): " + "; ".join(
                         f"{m['model']} {r['windows_speedup_vs_old_default']:.2f}x fewer windows, "
                         f"{r['time_speedup_vs_old_default']:.2f}x measured" for m, r in zip(models, speedups,
                                                                                              strict=True)) + ".")
    lines += ["", f"The engine's default plan: {plan_name(DEFAULT_PLAN)} (`mobanet.raster.tiling.DEFAULT_PLAN`).", ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    args.output.with_suffix(".json").write_text(json.dumps(
        {"command": command, "minutes": round(minutes, 1), "scenes": args.scenes, "size": args.size,
         "test_seed": TEST_SEED, "reference_stride": REFERENCE_STRIDE, "chosen": chosen,
         "engine_default": plan_name(DEFAULT_PLAN), "models": models}, indent=1, default=float) + "\n")
    print(f"wrote {args.output} and {args.output.with_suffix('.json')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=4, help="held-out test scenes")
    parser.add_argument("--size", type=int, default=640, help="side of each test scene in pixels")
    parser.add_argument("--overlaps", default="0,0.0625,0.125,0.25,0.375,0.5", help="overlap plans (comma list)")
    parser.add_argument("--margins", default="7,14,28,42,56", help="margin plans in pixels (comma list)")
    parser.add_argument("--models", default="embedded,vits", help="embedded and/or vits")
    parser.add_argument("--vits-model", type=Path, help="a trained ViT-S model file to reuse")
    parser.add_argument("--vits-epochs", type=int, default=5)
    parser.add_argument("--vits-iterations", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is least disturbed by other jobs on a shared machine)")
    parser.add_argument("--workdir", type=Path, default=Path("out/tiling-study"),
                        help="test scenes and the trained ViT-S model are kept here for reruns")
    parser.add_argument("--output", type=Path, default=RESULTS / "tiling.md")
    args = parser.parse_args()
    command = shlex.join(["python", "benchmarks/tiling_study.py", *sys.argv[1:]])
    torch.set_num_threads(args.threads)
    started = time.time()
    args.workdir.mkdir(parents=True, exist_ok=True)
    entries = write_scenes(args.workdir / f"test-{args.size}", args.scenes, args.size, TEST_SEED, 0.1)
    test = [SceneFiles(e["optical"], e["dsm"], e["labels"]) for e in entries]
    overlaps = [float(v) for v in args.overlaps.split(",") if v]
    margins = [int(v) for v in args.margins.split(",") if v]
    chosen_models = [m.strip() for m in args.models.split(",") if m.strip()]
    models = []
    for which in chosen_models:
        if which == "embedded":
            label, path = "embedded default model", default_model_path()
        elif which == "vits":
            label = "ViT-S/14 (random frozen backbone, briefly trained)"
            path = args.vits_model or train_vits(args.workdir, args.vits_epochs, args.vits_iterations, 4, 224)
        else:
            raise SystemExit(f"unknown model {which!r}; use embedded and/or vits")
        window = read_card(path).window
        models.append(measure_model(label, path, test, study_plans(window, overlaps, margins), args.batch_size))
    chosen = choose(models)
    print(f"chosen: {chosen}")
    write_report(models, chosen, args, command, (time.time() - started) / 60)


if __name__ == "__main__":
    main()
