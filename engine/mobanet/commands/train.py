"""`mobanet train`: fine-tune MoBaNet on labelled scenes (optical + DSM + labels).

The k-th --optical, --dsm and --labels form one scene; labels are a class
index raster, an ISPRS colour raster or polygons (--class-field). Without
--val-* scenes, a strip of each scene (--holdout) validates. Writes the best
model to --output, the last one to <stem>.last.safetensors, the resume state
to <stem>.state.safetensors and the logs to <stem>_logs/. Under torchrun
(`torchrun --nproc-per-node N -m mobanet train ...`) it trains data-parallel.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from mobanet.card import DEFAULT_WINDOW
from mobanet.commands import HelpFormatter, band_list
from mobanet.errors import InputError
from mobanet.model.mobanet import CHOICES
from mobanet.model.profiles import PROFILES
from mobanet.progress import Progress
from mobanet.train.options import MCRM_MODES, TrainOptions
from mobanet.wording import option

DEFAULTS = TrainOptions(scenes=[], output=Path("model.safetensors"))  # the defaults the help shows


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train", parents=parents, help="fine-tune MoBaNet on labelled optical + DSM scenes",
        description=" ".join(__doc__.split("\n\n")[1].split()), formatter_class=HelpFormatter)
    data = parser.add_argument_group("data (repeat --optical/--dsm/--labels once per scene)")
    data.add_argument("--optical", action="append", required=True, metavar="A", help="optical raster of a scene")
    data.add_argument("--dsm", action="append", required=True, metavar="B", help="DSM of the same scene")
    data.add_argument("--labels", action="append", required=True, metavar="L",
                      help="labels of the same scene: class raster, ISPRS colour raster or polygons")
    data.add_argument("--class-field", metavar="FIELD", help="attribute holding the class of polygon labels")
    data.add_argument("--val-optical", action="append", default=[], metavar="A", help="validation optical raster")
    data.add_argument("--val-dsm", action="append", default=[], metavar="B", help="validation DSM")
    data.add_argument("--val-labels", action="append", default=[], metavar="L", help="validation labels")
    data.add_argument("--holdout", type=float, default=0.2, metavar="F",
                      help="without --val-* scenes: validate on this right-hand share of each scene (0: none)")
    data.add_argument("--bands", type=band_list, metavar="1,2,3", help="optical band numbers in R,G,B order")
    data.add_argument("--min-labelled", type=float, default=0.5, metavar="F",
                      help="least labelled share of a training window")
    data.add_argument("--class-balanced", action="store_true", help="centre windows on classes drawn uniformly")

    net = parser.add_argument_group("network")
    net.add_argument("--output", required=True, metavar="MODEL.safetensors", help="the best model is written here")
    net.add_argument("--backbone", default="tiny", metavar="NAME",
                     help="tiny, dinov2_vits14 .. dinov2_vitg14 (+ _reg4), or a timm DINOv2 name")
    net.add_argument("--weights", metavar="FILE", help="backbone weights (Meta .pth or timm .safetensors)")
    net.add_argument("--pretrained", action="store_true", help="download the backbone weights through timm")
    net.add_argument("--init", metavar="MODEL", help="start from this model file (fine-tune an existing model)")
    net.add_argument("--profile", choices=tuple(PROFILES), default="mobanet",
                     help="network layout: ours, or 'reference', the authors' released model (direct CPIA, a "
                          "projection per stage, their UPerNet; DSM min-max over the whole raster)")
    net.add_argument("--cpia", choices=CHOICES["cpia"],
                     help="CPIA form (default: the profile's: adapter for mobanet, direct for reference)")
    for name in ("fusion", "streams"):
        net.add_argument(f"--{name}", choices=CHOICES[name], default=CHOICES[name][0])
    net.add_argument("--full-finetune", action="store_true", help="train the backbone too (nothing frozen)")
    net.add_argument("--feature-pyramid", action=argparse.BooleanOptionalAction, default=None,
                     help="simple feature pyramid (x4, x2, x1, x0.5) before the UPerNet head (default: on for the "
                          "mobanet profile, chosen by the ablation; off for reference, the authors' layout)")
    net.add_argument("--mcrm", choices=MCRM_MODES, default=DEFAULTS.mcrm,
                     help="modality-conditional random masking of each masked sample: a rectangle (local), the "
                          "whole modality (full), either at random (mix), or off (none)")
    net.add_argument("--mcrm-ratio", type=float, default=DEFAULTS.mcrm_ratio, metavar="F",
                     help="share of each batch masked (half lose the optical image, half the DSM)")
    net.add_argument("--aux-loss", action=argparse.BooleanOptionalAction, default=DEFAULTS.aux_heads,
                     help="auxiliary hard-pixel heads on each modality and their loss")
    net.add_argument("--aux-weight", type=float, default=DEFAULTS.aux_weight, metavar="F",
                     help="weight of the auxiliary losses")

    schedule = parser.add_argument_group("schedule")
    schedule.add_argument("--epochs", type=int, default=50, metavar="N", help="training epochs")
    schedule.add_argument("--iterations", type=int, default=1000, metavar="N", help="optimiser steps per epoch")
    schedule.add_argument("--batch-size", type=int, default=24, metavar="N", help="windows per step and process")
    schedule.add_argument("--accumulate", type=int, default=1, metavar="N", help="batches per optimiser step")
    schedule.add_argument("--window", type=int, metavar="N",
                          help="side in pixels of the windows the model is trained on, validated on and later "
                               "segments with (stored in the model file), rounded up to whole 14 px patches "
                               f"(default: {DEFAULT_WINDOW} = 19 patches, or the --init model's)")
    schedule.add_argument("--lr", type=float, default=2e-4, metavar="F", help="peak learning rate (AdamW)")
    schedule.add_argument("--min-lr", type=float, default=1e-6, metavar="F", help="end of the cosine decay")
    schedule.add_argument("--weight-decay", type=float, default=0.05, metavar="F",
                          help="AdamW weight decay (not on biases and 1-D parameters)")
    schedule.add_argument("--warmup-epochs", type=int, default=5, metavar="N",
                          help="linear warm-up before the cosine decay")
    schedule.add_argument("--early-stopping", type=int, metavar="N",
                          help="stop after N validations without a better mIoU")
    schedule.add_argument("--validate-every", type=int, default=1, metavar="N", help="validate every N epochs")

    run_group = parser.add_argument_group("run")
    run_group.add_argument("--seed", type=int, default=0, help="random seed (CPU runs are reproducible)")
    run_group.add_argument("--device", default="auto", metavar="auto|cpu|cuda:0")
    run_group.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA (bf16 autocast by default)")
    run_group.add_argument("--resume", metavar="STATE",
                           help="continue an interrupted run from its <stem>.state.safetensors")
    run_group.add_argument("--full-checkpoint", action="store_true",
                           help="store the backbone in the model files too (large; default: adapter only)")
    run_group.add_argument("--log-dir", metavar="DIR", help="CSV/JSON/PNG logs (default: <stem>_logs/)")
    parser.set_defaults(run=run)


def _scenes(optical: list[str], dsm: list[str], labels: list[str], class_field: str | None, prefix: str) -> list:
    from mobanet.train import SceneFiles

    if not (len(optical) == len(dsm) == len(labels)):
        flags = [f"--{prefix}{kind}" for kind in ("optical", "dsm", "labels")]
        raise InputError(f"Got {len(optical)} {option(flags[0])}, {len(dsm)} {option(flags[1])} and {len(labels)} "
                         f"{option(flags[2])}; give all three once per scene, in the same order.")
    return [SceneFiles(Path(o), Path(d), Path(lab), class_field) for o, d, lab in zip(optical, dsm, labels,
                                                                                     strict=True)]


def run(args: argparse.Namespace, progress: Progress) -> dict:
    from mobanet.train import train

    if os.environ.get("RANK", "0") != "0":
        progress.mode = "quiet"  # under torchrun only rank 0 reports (and prints the JSON result)
    options = TrainOptions(
        scenes=_scenes(args.optical, args.dsm, args.labels, args.class_field, ""),
        validation=_scenes(args.val_optical, args.val_dsm, args.val_labels, args.class_field, "val-"),
        output=Path(args.output), holdout=args.holdout, backbone=args.backbone,
        weights=Path(args.weights) if args.weights else None, pretrained=args.pretrained,
        init=Path(args.init) if args.init else None, profile=args.profile, cpia=args.cpia, fusion=args.fusion,
        streams=args.streams, finetune_backbone=args.full_finetune, feature_pyramid=args.feature_pyramid,
        mcrm=args.mcrm, mcrm_ratio=args.mcrm_ratio, aux_heads=args.aux_loss,
        aux_weight=args.aux_weight, epochs=args.epochs,
        iterations=args.iterations, batch_size=args.batch_size, accumulate=args.accumulate, window=args.window,
        lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        min_labelled=args.min_labelled, class_balanced=args.class_balanced, seed=args.seed, device=args.device,
        amp=not args.no_amp, resume=Path(args.resume) if args.resume else None,
        early_stopping=args.early_stopping, full_checkpoint=args.full_checkpoint,
        log_dir=Path(args.log_dir) if args.log_dir else None, validate_every=args.validate_every,
        bands=args.bands, command=shlex.join(["mobanet", *sys.argv[1:]]))
    return train(options, progress)
