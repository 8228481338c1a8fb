"""`mobanet info`: what a model file holds, or how big MoBaNet is on a backbone.

``mobanet info MODEL`` prints the model card and parameter counts;
``mobanet info --backbone NAME`` counts trainable and total parameters of
MoBaNet on that backbone, built on the meta device (no weights, no memory).
A query command: its answer goes to stdout, as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mobanet.errors import InputError
from mobanet.model import PROFILES, MoBaNetConfig, build_model, resolve_backbone
from mobanet.model.mobanet import CHOICES
from mobanet.modelfile import model_config, read_card
from mobanet.progress import Progress
from mobanet.wording import option


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "info", parents=parents, help="show a model file's card, or parameter counts for a backbone",
        description=__doc__.split("\n\n")[1].replace("``", "'"))
    parser.add_argument("model", nargs="?", metavar="MODEL", help="a MoBaNet model file (.safetensors)")
    parser.add_argument("--backbone", metavar="NAME",
                        help="count parameters on this backbone instead: tiny, dinov2_vits14 .. dinov2_vitg14 "
                             "(+ _reg4), or a timm DINOv2 name")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    variant = parser.add_argument_group("model variant for --backbone")
    variant.add_argument("--num-classes", type=int, default=6)
    variant.add_argument("--profile", choices=tuple(PROFILES), default="mobanet",
                         help="ours, or 'reference': the authors' released layout")
    for name, choices in CHOICES.items():
        variant.add_argument(f"--{name}", choices=choices, default=getattr(MoBaNetConfig, name))
    variant.add_argument("--feature-pyramid", action="store_true")
    variant.add_argument("--finetune-backbone", action="store_true")
    parser.set_defaults(run=run)


def parameter_counts(config: MoBaNetConfig) -> dict[str, Any]:
    """Trainable/total counts of the whole network and per part, built on the meta device."""
    report = build_model(config, device="meta").parameter_report()
    overall = report.pop("all")
    return {"trainable": overall["trainable"], "total": overall["total"], "parts": report}


def _backbone_info(args: argparse.Namespace) -> dict[str, Any]:
    config = MoBaNetConfig(backbone=args.backbone, num_classes=args.num_classes, profile=args.profile, cpia=args.cpia,
                           fusion=args.fusion, streams=args.streams, feature_pyramid=args.feature_pyramid,
                           finetune_backbone=args.finetune_backbone)
    return {"backbone": args.backbone, "timm_name": resolve_backbone(args.backbone).timm_name,
            "config": config.to_dict(), **parameter_counts(config)}


def _model_info(path: Path) -> dict[str, Any]:
    card = read_card(path)
    config = model_config(path, card)
    return {"model": str(path), "size_bytes": path.stat().st_size, "card": asdict(card),
            **parameter_counts(config)}


def _millions(n: int) -> str:
    return f"{n / 1e6:,.3f} M"


def format_table(info: dict[str, Any]) -> str:
    """Readable answer: card summary (for a file) and the parameter table."""
    lines = []
    if "card" in info:
        card = info["card"]
        lines += [f"model:        {info['model']} ({info['size_bytes'] / 1e6:.1f} MB, "
                  f"{'adapter only' if card['adapter_only'] else 'full'})",
                  f"name:         {card['name']}  {card['description']}".rstrip(),
                  f"backbone:     {card['backbone']}"
                  + (f" (weights sha256 {card['backbone_weights_sha256']})" if card["backbone_weights_sha256"] else ""),
                  f"classes:      {', '.join(card['class_names'])}",
                  f"bands:        optical {card['optical_bands']}, window {card['window']} px, "
                  f"gsd {card['gsd'] if card['gsd'] is not None else 'any'}",
                  f"config:       {json.dumps(card['config'])}",
                  f"engine:       {card['engine_version']}"]
        scores = card.get("modality_scores") or {}
        if scores:
            lines.append("validation:   mIoU " + ", ".join(
                f"{(scores.get(key) or {}).get('miou') or 0.0:.3f} {label}" for key, label in
                (("both", "with both inputs"), ("dsm_absent", "without DSM"), ("optical_absent", "without optical"))))
        if card["training"]:
            lines.append(f"training:     {json.dumps(card['training'])}")
        lines.append("")
    else:
        lines += [f"backbone:     {info['backbone']} ({info['timm_name']})", ""]
    lines.append(f"{'part':<18}{'trainable':>16}{'total':>16}")
    for name, part in info["parts"].items():
        lines.append(f"{name:<18}{_millions(part['trainable']):>16}{_millions(part['total']):>16}")
    lines.append(f"{'all':<18}{_millions(info['trainable']):>16}{_millions(info['total']):>16}")
    return "\n".join(lines)


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    if (args.model is None) == (args.backbone is None):
        raise InputError(f"Give either a model file (`mobanet info MODEL`) or {option('--backbone')} NAME, not both "
                         "or neither.")
    info = _backbone_info(args) if args.backbone else _model_info(Path(args.model))
    if progress.mode != "json":  # under --json-progress the result event carries the answer
        print(json.dumps(info, indent=2) if args.json else format_table(info))
    return info
