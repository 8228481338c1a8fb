"""Design ablation from scratch on synthetic scenes: network layouts (profiles, CPIA forms).

The evidence for `mobanet train`'s MCRM, auxiliary-loss and feature-pyramid
defaults is the frozen-backbone, multi-seed ablation in `benchmarks/ablation/`
(`make bench-ablation`); this older one-seed script compares layouts whose
backbone trains too, and wrote benchmarks/results/ablation_profiles.md.

Trains every variant with the same budget (data, iterations, seed) and scores
it on held-out synthetic scenes three times: with both modalities, with the DSM
missing and with the optical image missing (the missing input is zeroed after
normalisation, as MCRM's "full" masking does in training). Writes
benchmarks/results/ablation_profiles.md and .json by default.

No pretrained foundation model can be downloaded here, so every variant uses
the tiny DINOv2-structured ViT trained from scratch (``finetune_backbone``);
the comparison is between fusion designs, not a reproduction of the paper's
numbers on ISPRS data.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mobanet.labels import read_labels
from mobanet.metrics import confusion_matrix, scores
from mobanet.modelfile import load_model
from mobanet.progress import Progress
from mobanet.raster import open_scene, predict_array
from mobanet.synth import write_scenes
from mobanet.train import SceneFiles, TrainOptions, train

RESULTS = Path(__file__).resolve().parent / "results"

VARIANTS: dict[str, dict] = {
    "optical only": dict(streams="optical", mcrm="none"),
    "DSM only": dict(streams="dsm", mcrm="none"),
    "early fusion (4-channel)": dict(streams="early", mcrm="none"),
    "MoBaNet (full)": dict(),
    "without CPIA": dict(cpia="none"),
    "without DGFM (mean fusion)": dict(fusion="mean"),
    "without MCRM": dict(mcrm="none"),
    "CPIA direct-add form": dict(cpia="direct"),
    "MCRM full-modality masking": dict(mcrm="full"),
    "with simple feature pyramid": dict(feature_pyramid=True),
    "reference profile (authors' layout)": dict(profile="reference"),
}


class WithoutModality(torch.nn.Module):
    """Runs a model with one input zeroed: how much does it lean on the other?"""

    def __init__(self, model: torch.nn.Module, missing: str):
        super().__init__()
        self.model, self.missing = model, missing
        self.patch_size, self.config = model.patch_size, model.config

    def forward(self, optical: torch.Tensor, dsm: torch.Tensor) -> torch.Tensor:
        if self.missing == "optical":
            optical = torch.zeros_like(optical)
        elif self.missing == "dsm":
            dsm = torch.zeros_like(dsm)
        return self.model(optical, dsm)


def score_model(path: Path, test_scenes: list[SceneFiles], missing: str | None) -> dict:
    model, card = load_model(path)
    runner = WithoutModality(model, missing) if missing else model
    cm = np.zeros((card.num_classes, card.num_classes), dtype=np.int64)
    for files in test_scenes:
        scene = open_scene(files.optical, files.dsm, card)
        labels = read_labels(files.labels, scene, card.class_names, card.class_colors)
        classes, _ = predict_array(runner, card, scene, device="cpu", batch_size=8)
        cm += confusion_matrix(classes, labels, card.num_classes)
        scene.close()
    return scores(cm, card.class_names, card.mean_class_indices())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=6, help="training scenes")
    parser.add_argument("--test-scenes", type=int, default=3, help="held-out test scenes")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--window", type=int, default=224)
    parser.add_argument("--only", nargs="*", help="run only these variants (names as in the table)")
    parser.add_argument("--output", type=Path, default=RESULTS / "ablation_profiles.md")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        to_files = lambda fs: [SceneFiles(f["optical"], f["dsm"], f["labels"]) for f in fs]  # noqa: E731
        training = to_files(write_scenes(work / "train", args.scenes, args.size, 300, 0.1))
        validation = to_files(write_scenes(work / "val", 1, args.size, 600, 0.1))
        test = to_files(write_scenes(work / "test", args.test_scenes, args.size, 700, 0.1))
        for name, variant in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            started = time.time()
            output = work / f"{len(rows)}.safetensors"
            options = TrainOptions(
                scenes=training, validation=validation, output=output, backbone="tiny", finetune_backbone=True,
                epochs=args.epochs, iterations=args.iterations, batch_size=args.batch_size, window=args.window,
                warmup_epochs=1, lr=1e-3, seed=0, device="cpu", log_dir=work / f"logs{len(rows)}", **variant,
            )
            summary = train(options, Progress("quiet"))
            both, no_dsm, no_optical = (score_model(output, test, m) for m in (None, "dsm", "optical"))
            rows.append(dict(variant=name, options=variant, trainable=summary.get("trainable_parameters"),
                             minutes=round((time.time() - started) / 60, 1), both=both, dsm_missing=no_dsm,
                             optical_missing=no_optical))
            print(f"{name:32s} mIoU {both['miou']:.3f}  DSM missing {no_dsm['miou']:.3f}  "
                  f"optical missing {no_optical['miou']:.3f}  ({rows[-1]['minutes']} min)", flush=True)
    write_results(rows, args)


def write_results(rows: list[dict], args: argparse.Namespace) -> None:
    command = shlex.join(["python", "benchmarks/ablation_profiles.py", *sys.argv[1:]])
    class_names = rows[0]["both"]["class_names"]
    lines = [
        "# Ablation on synthetic scenes",
        "",
        f"Budget per variant: {args.epochs} epochs x {args.iterations} iterations, batch {args.batch_size}, "
        f"{args.window} px windows; {args.scenes} training scenes, {args.test_scenes} held-out test scenes of "
        f"{args.size} px (0.1 m). Tiny DINOv2-structured ViT trained from scratch for every variant (no pretrained "
        "weights can be downloaded here). mIoU/mF1 over the five classes without clutter. Missing modality: that "
        f"input zeroed after normalisation at test time. Command: `{command}`.",
        "",
        "| variant | mIoU | mF1 | OA | mIoU, DSM missing | mIoU, optical missing | mean drop | "
        + " | ".join(f"IoU {n}" for n in class_names) + " | minutes |",
        "|---|" + "---|" * (7 + len(class_names)),
    ]
    for row in rows:
        both = row["both"]
        drop = both["miou"] - (row["dsm_missing"]["miou"] + row["optical_missing"]["miou"]) / 2
        per_class = " | ".join(_pct(both["per_class"][n]["iou"]) for n in class_names)
        lines.append(
            f"| {row['variant']} | {_pct(both['miou'])} | {_pct(both['mf1'])} | {_pct(both['overall_accuracy'])} | "
            f"{_pct(row['dsm_missing']['miou'])} | {_pct(row['optical_missing']['miou'])} | {_pct(drop)} | "
            f"{per_class} | {row['minutes']} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    args.output.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))
    print(f"wrote {args.output}")


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}"


if __name__ == "__main__":
    main()
