"""Training speed on the CPU: seconds per iteration at batch 4 x 256 px (`python benchmarks/bench_train.py`).

One iteration is what `Trainer.optimise` does per step: MCRM on the batch,
``forward_train``, the loss, backward and an AdamW step, on windows read by
`WindowSampler` from a synthetic scene (reading and augmenting are timed
apart). Backbones: ``tiny`` and ViT-S/14 (DINOv2 structure, random weights:
none can be downloaded here; the speed does not depend on the values).
Writes benchmarks/results/train.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mobanet.card import DEFAULT_WINDOW, ModelCard
from mobanet.labels import read_labels
from mobanet.model import MoBaNetConfig, MoBaNetLoss, build_model, mask_modalities
from mobanet.raster import open_scene
from mobanet.synth import write_scenes
from mobanet.train.sampling import TrainingScene, WindowSampler, holdout_regions
from mobanet.train.schedule import build_optimizer

RESULTS = Path(__file__).resolve().parent / "results"


def measure(backbone: str, sampler: WindowSampler, batch: int, iterations: int) -> dict:
    torch.manual_seed(0)
    model = build_model(MoBaNetConfig(backbone=backbone), random_init=True).train()
    optimizer = build_optimizer(model, 2e-4, 0.05)
    loss_fn = MoBaNetLoss(0.01)
    generator = torch.Generator().manual_seed(0)
    read_times, step_times = [], []
    for index in range(iterations + 1):  # the first iteration warms up allocators and is not counted
        tic = time.perf_counter()
        optical, dsm, labels = sampler.batch(batch)
        read = time.perf_counter() - tic
        tic = time.perf_counter()
        optical, dsm, _ = mask_modalities(optical, dsm, 0.25, "local", generator)
        loss, _ = loss_fn(model.forward_train(optical, dsm), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step = time.perf_counter() - tic
        if index:
            read_times.append(read)
            step_times.append(step)
    report = model.parameter_report()["all"]
    return {"backbone": backbone, "read": statistics.median(read_times), "step": statistics.median(step_times),
            "trainable": report["trainable"], "total": report["total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per backbone")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--backbones", nargs="*", default=["tiny", "dinov2_vits14"])
    parser.add_argument("--output", type=Path, default=RESULTS / "train.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        files = write_scenes(scratch, 1, 512, seed=5, gsd=0.1)[0]
        card = ModelCard()
        scene = open_scene(files["optical"], files["dsm"], card)
        labels = read_labels(files["labels"], scene, card.class_names, card.class_colors)
        region, _ = holdout_regions(scene.width, scene.height, 0.0)
        sampler = WindowSampler([TrainingScene(scene, labels, region, "synthetic")], args.window, seed=0)
        for backbone in args.backbones:
            rows.append(measure(backbone, sampler, args.batch_size, args.iterations))
            print(f"{backbone}: {rows[-1]['step']:.2f} s/iteration (+ {rows[-1]['read']:.3f} s reading)", flush=True)

    lines = [
        "# Training speed (CPU)",
        "",
        f"Batch {args.batch_size} x {args.window} px windows, dual stream, CPIA adapter, DGFM, MCRM local, AdamW; "
        f"median of {args.iterations} iterations after one warm-up; torch {torch.__version__}, "
        f"{args.threads} thread(s) on {platform.processor() or platform.machine()} ({os.cpu_count()} CPUs visible, "
        "shared). Random backbone weights (speed does not depend on them). Command: "
        f"`python {shlex.join(['benchmarks/bench_train.py', *sys.argv[1:]])}`.",
        "",
        "| backbone | trainable params | total params | s / iteration (step) | s / iteration (window reading) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['backbone']} | {row['trainable']:,} | {row['total']:,} | {row['step']:.2f} | "
                     f"{row['read']:.3f} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
