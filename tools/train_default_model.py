"""Train the embedded default model (`make default-model`): reproducible, CPU, under 30 minutes.

It is a demonstration model: a tiny DINOv2-structured ViT trained from scratch,
with MoBaNet's trainable parts, on procedurally generated scenes
(`mobanet synth`). It is NOT a pretrained foundation model and is not meant
for real imagery; its model card says so.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from mobanet.modelfile import load_model, save_model
from mobanet.progress import Progress
from mobanet.synth import write_scenes
from mobanet.train import SceneFiles, TrainOptions, train

DESCRIPTION = (
    "Demonstration model for mobanet-qgis. Backbone: a tiny DINOv2-structured ViT (patch 14) trained from scratch "
    "together with MoBaNet's CPIA/DGFM/decoder on synthetic scenes from `mobanet synth` (0.1 m GSD, ISPRS classes). "
    "It is not a pretrained vision foundation model and is not meant for real imagery: fine-tune a DINOv2 MoBaNet "
    "on your own labels for that (`mobanet train --backbone dinov2_vitl14 --weights ...`)."
)

TRAIN_SEED, VALIDATION_SEED = 100, 900  # the bundled sample uses seed 2026: never trained on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="model file to write (.safetensors)")
    parser.add_argument("--scenes", type=int, default=8, help="synthetic training scenes")
    parser.add_argument("--size", type=int, default=768, help="side of each synthetic scene in pixels")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=130, help="iterations per epoch")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--window", type=int, default=224, help="training = validation = inference window")
    parser.add_argument("--workdir", type=Path, help="keep the synthetic scenes and logs here")
    args = parser.parse_args()

    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        train_files = write_scenes(workdir / "train", args.scenes, args.size, TRAIN_SEED, 0.1)
        val_files = write_scenes(workdir / "validation", 2, args.size, VALIDATION_SEED, 0.1)
        as_scenes = [SceneFiles(f["optical"], f["dsm"], f["labels"]) for f in train_files]
        validation = [SceneFiles(f["optical"], f["dsm"], f["labels"]) for f in val_files]
        checkpoint = workdir / "checkpoint.safetensors"  # with .last/.state beside it, left in the workdir
        options = TrainOptions(
            scenes=as_scenes, validation=validation, output=checkpoint, backbone="tiny",
            finetune_backbone=True, epochs=args.epochs, iterations=args.iterations, batch_size=args.batch_size,
            window=args.window, warmup_epochs=1, lr=1e-3, seed=0, device="cpu", log_dir=workdir / "logs",
        )
        summary = train(options, Progress("tqdm"))
        model, card = load_model(checkpoint)
        card.name = "mobanet-demo-tiny"
        card.description = DESCRIPTION
        card.gsd = 0.1
        card.training["recipe"] = "make default-model: " + shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        card.training["minutes"] = round((time.time() - started) / 60, 1)
        save_model(args.output, model, card, full=True)
        size = args.output.stat().st_size / 1e6
        print(f"{args.output}: {size:.1f} MB, best validation mIoU {summary['best_miou']:.3f}, "
              f"{card.training['minutes']} min")


if __name__ == "__main__":
    main()
