"""`mobanet import`: turn a checkpoint of the authors' MoBaNet code into a MoBaNet model file.

CKPT is the .pth that sauryeo/MoBaNet's train.py writes (torch.save of the
whole network's state dict: frozen DINOv2 backbone plus trained parts). It is
read as tensors only (never unpickled code), checked name by name and shape by
shape against the reference profile (the authors' layout) on its backbone,
and written as a safetensors model file with a card: ISPRS classes and
colours, band order, the authors' normalisation, window 266. With --weights
(the DINOv2 .pth it was trained on) the output keeps only the trained
tensors and needs that file to load; without, it keeps the backbone too.
"""

from __future__ import annotations

import argparse
from typing import Any

from mobanet.commands import HelpFormatter, band_list
from mobanet.progress import Progress


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "import", parents=parents, help="convert a checkpoint of the authors' train.py into a model file",
        description=" ".join(__doc__.split("\n\n")[1].split()), formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", metavar="CKPT.pth", help="the .pth written by the authors' train.py")
    parser.add_argument("--output", required=True, metavar="M.safetensors", help="the model file to write")
    parser.add_argument("--backbone", metavar="NAME",
                        help="the checkpoint's backbone (dinov2_vits14 .. dinov2_vitg14); default: found from its "
                             "tensors, and checked when given")
    parser.add_argument("--weights", metavar="DINOV2.pth",
                        help="the DINOv2 weights the model was trained on: the output then holds only the trained "
                             "tensors (small) and records this file's hash")
    parser.add_argument("--bands", type=band_list, metavar="1,2,3",
                        help="optical band numbers the model reads, in the order it was trained on (default 1,2,3)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from mobanet.reference import import_checkpoint

    result = import_checkpoint(args.checkpoint, args.output, backbone=args.backbone, weights=args.weights,
                               bands=args.bands, progress=progress)
    progress.info(f"Wrote {result['output']} ({result['backbone']}, reference profile, "
                  f"{'trained tensors only' if result['adapter_only'] else 'with its backbone'}).")
    return result
