"""Checkpoints of the authors' code (sauryeo/MoBaNet ``train.py``) as MoBaNet model files.

Their ``train.py`` saves ``torch.save(net.state_dict())`` of the whole
network: the frozen DINOv2 backbone in Meta's naming under
``image_encoder.backbone.``, and the trainable parts under the authors'
module names. Such a checkpoint is the reference profile of MoBaNet
(`mobanet.model.profiles`) under other names:

1. read it with ``torch.load(weights_only=True)`` (tensors only, no code);
2. find its backbone from the tensors (or check the one given);
3. compare every name and shape with what a reference-profile MoBaNet on
   that backbone holds, in the checkpoint's own naming; any difference is one
   error that lists them;
4. rename (`RENAMES` for the trainable parts, timm's DINOv2 filter for the
   backbone), load, and write a model file with a card (ISPRS classes and
   colours, band order, the authors' normalisation, window 266).

With ``weights`` (the DINOv2 ``.pth`` the model was trained on) the backbone
must equal that file, and the model file keeps only the trainable tensors;
without, it keeps the backbone too.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from timm.layers import GluMlp
from timm.models.vision_transformer import checkpoint_filter_fn

from mobanet.card import DEFAULT_WINDOW, ModelCard
from mobanet.errors import InputError
from mobanet.fileutil import check_writable
from mobanet.model import MoBaNet, MoBaNetConfig, build_model
from mobanet.model.backbone import ALIASES, TINY, create_backbone, file_sha256, resolve_backbone
from mobanet.model.profiles import PROFILES
from mobanet.modelfile import save_model
from mobanet.progress import Progress
from mobanet.wording import option

BACKBONE_PREFIX = "image_encoder.backbone."
SOURCE = "sauryeo/MoBaNet train.py"

# (the authors' name, ours); "{i}" is a stage index. First match wins; each pair maps a key prefix.
RENAMES = [
    ("image_encoder.extra_patch_embed.", "dsm_patch_embed."),
    ("image_encoder.peft_cpia_blocks.{i}.D_fc1.", "cpia.{i}.reduce_optical."),
    ("image_encoder.peft_cpia_blocks.{i}.D_fc2.", "cpia.{i}.reduce_dsm."),
    ("image_encoder.peft_cpia_blocks.{i}.P_fc2.", "cpia.{i}.mix."),
    ("image_encoder.peft_cpia_blocks.{i}.U_fc1.", "cpia.{i}.expand."),
    ("image_encoder.peft_cpia_blocks.{i}.tfts_gamma_rgb", "cpia.{i}.gamma_optical"),
    ("image_encoder.peft_cpia_blocks.{i}.tfts_beta_rgb", "cpia.{i}.beta_optical"),
    ("image_encoder.peft_cpia_blocks.{i}.tfts_gamma_dsm", "cpia.{i}.gamma_dsm"),
    ("image_encoder.peft_cpia_blocks.{i}.tfts_beta_dsm", "cpia.{i}.beta_dsm"),
    ("image_encoder.peft_dgfm_blocks.{i}.rgb_reduce.", "fusion.{i}.reduce_optical."),
    ("image_encoder.peft_dgfm_blocks.{i}.dsm_reduce.", "fusion.{i}.reduce_dsm."),
    ("image_encoder.peft_dgfm_blocks.{i}.gate_net.0.", "fusion.{i}.mix."),
    ("image_encoder.peft_dgfm_blocks.{i}.gate_net.1.", "fusion.{i}.group_norm."),
    ("image_encoder.peft_dgfm_blocks.{i}.gate_net.3.", "fusion.{i}.gate."),
    ("image_encoder.peft_fuse_norms.{i}.", "fusion.{i}.norm.norm."),
    ("image_encoder.dual_proj_layers.{i}.", "projections.{i}."),
    ("decoder.ppm.stages.{i}.1.0.", "head.ppm.branches.{i}.1."),
    ("decoder.ppm.stages.{i}.1.1.", "head.ppm.branches.{i}.2."),
    ("decoder.ppm.bottleneck.", "head.ppm.bottleneck."),
    ("decoder.lateral_convs.", "head.laterals."),
    ("decoder.fpn_convs.", "head.fpn_convs."),
    ("decoder.fpn_bottleneck.", "head.bottleneck."),
    ("decoder.classifier.1.0.", "head.classifier."),
    ("aux_head_rgb.conv.", "aux_heads.optical.conv."),
    ("aux_head_rgb.conv_out.0.", "aux_heads.optical.classifier."),
    ("aux_head_dsm.conv.", "aux_heads.dsm.conv."),
    ("aux_head_dsm.conv_out.0.", "aux_heads.dsm.classifier."),
]


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)"))


_FORWARD = [(_pattern(theirs), ours) for theirs, ours in RENAMES]
_BACKWARD = [(_pattern(ours), theirs) for theirs, ours in RENAMES]


def _rename(name: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, template in rules:
        match = pattern.match(name)
        if match:
            return template.replace("{i}", match.groupdict().get("i") or "") + name[match.end():]
    return None


def authors_name(ours: str) -> str | None:
    """The authors' name of one of our reference-profile tensors (None for the backbone's)."""
    return _rename(ours, _BACKWARD)


def our_name(theirs: str) -> str | None:
    """Our name of one of the authors' trainable tensors (None when it is not one of theirs)."""
    return _rename(theirs, _FORWARD)


def meta_backbone_layout(backbone: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a timm DINOv2 backbone as Meta's checkpoints lay it out (timm's conversion undone)."""
    layout = {name: tuple(t.shape) for name, t in backbone.state_dict().items()}
    width = layout["cls_token"][-1]
    layout["mask_token"] = (1, width)
    if "reg_token" in layout:  # Meta keeps registers apart and a class slot in the position table
        layout["register_tokens"] = layout.pop("reg_token")
        count, width = layout["pos_embed"][1:]
        layout["pos_embed"] = (1, count + 1, width)
    if isinstance(backbone.blocks[0].mlp, GluMlp):  # ViT-g: Meta's SwiGLU calls fc1/fc2 w12/w3
        layout = {re.sub(r"\.mlp\.fc1\.", ".mlp.w12.", re.sub(r"\.mlp\.fc2\.", ".mlp.w3.", k)): v
                  for k, v in layout.items()}
    return layout


def authors_layout(model: MoBaNet) -> dict[str, tuple[int, ...]]:
    """Every name and shape the authors' train.py writes for the network ``model`` reproduces."""
    layout = {BACKBONE_PREFIX + k: v for k, v in meta_backbone_layout(model.backbone).items()}
    for name, tensor in model.state_dict().items():
        if not name.startswith("backbone."):
            layout[authors_name(name) or name] = tuple(tensor.shape)
    return layout


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save``d state dict, never running code from the file."""
    if not path.is_file():
        raise InputError(f"Checkpoint {path} does not exist; give the .pth file the authors' train.py wrote.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch raise many types for foreign or damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} cannot be read as a checkpoint of tensors ({reason}); give the .pth file the "
                         "authors' train.py wrote (torch.save of the network's state_dict).") from exc
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InputError(f"{path} is not a state dict of named tensors; give the .pth file the authors' train.py "
                         "wrote (torch.save of the network's state_dict).")
    return state


def _architecture(tensors: dict[str, Any]) -> tuple[int, int, bool]:
    """(width, depth, registers) of the backbone in a checkpoint."""
    depth = 1 + max((int(m.group(1)) for k in tensors
                     if (m := re.match(re.escape(BACKBONE_PREFIX) + r"blocks\.(\d+)\.", k))), default=-1)
    cls_token = tensors.get(BACKBONE_PREFIX + "cls_token")
    width = int(cls_token.shape[-1]) if cls_token is not None else 0
    return width, depth, BACKBONE_PREFIX + "register_tokens" in tensors


def _describe(width: int, depth: int, registers: bool) -> str:
    return f"width {width}, {depth} blocks{', registers' if registers else ''}"


def find_backbone(path: Path, tensors: dict[str, torch.Tensor], requested: str | None) -> str:
    """The backbone name of the checkpoint's DINOv2 (checked against ``requested`` when given)."""
    found = _architecture(tensors)
    if 0 in found[:2]:
        raise InputError(f"{path} holds no DINOv2 backbone (no {BACKBONE_PREFIX}cls_token and blocks.*); it is not "
                         "a checkpoint of the authors' DINOv2 MoBaNet.")
    candidates = [requested] if requested else [n for n in (TINY, *ALIASES) if n.endswith("_reg4") == found[2]]
    for name in candidates:
        with torch.device("meta"):
            backbone = create_backbone(resolve_backbone(name), random_init=True)
        built = (backbone.embed_dim, len(backbone.blocks), backbone.num_reg_tokens > 0)
        if built == found:
            return name
    if requested:
        raise InputError(f"{path} holds a DINOv2 of {_describe(*found)}, not {requested} given with "
                         f"{option('--backbone')} ({_describe(*built)}); drop {option('--backbone')} or name the "
                         "backbone the checkpoint was trained on.")
    raise InputError(f"{path} holds a DINOv2 of {_describe(*found)}, which is none of {', '.join(candidates)}; "
                     f"name its backbone with {option('--backbone')}.")


def check_layout(path: Path, tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    """One error listing every missing, extra and wrongly shaped tensor (a few of each, with counts)."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} instead of {expected[k]}" for k in sorted(set(tensors) & set(expected))
             if tuple(tensors[k].shape) != expected[k]]
    problems = [f"{len(items)} {label} ({', '.join(items[:4])}{', ...' if len(items) > 4 else ''})"
                for label, items in (("missing", missing), ("extra", extra), ("with another shape", wrong)) if items]
    if problems:
        raise InputError(f"{path} does not have the layout of the authors' MoBaNet on this backbone: "
                         f"{'; '.join(problems)}. Give the checkpoint written by their train.py for a DINOv2 model "
                         f"(and {option('--backbone')} when it is not found from the tensors).")


def to_our_names(tensors: dict[str, torch.Tensor], backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The checkpoint renamed to a reference-profile MoBaNet's state dict (backbone through timm's filter)."""
    meta = {k[len(BACKBONE_PREFIX):]: v for k, v in tensors.items() if k.startswith(BACKBONE_PREFIX)}
    state = {f"backbone.{k}": v for k, v in checkpoint_filter_fn(dict(meta), backbone).items()}
    for name, tensor in tensors.items():
        if not name.startswith(BACKBONE_PREFIX):
            state[our_name(name)] = tensor
    return state


def _load(path: Path, state: dict[str, torch.Tensor], skeleton: MoBaNet, weights: Path | None) -> MoBaNet:
    """The network holding ``state`` (``skeleton`` is it on the meta device); with ``weights`` its backbone
    must be that file's."""
    if weights is None:
        skeleton.load_state_dict(state, strict=True, assign=True)
        return skeleton.eval()
    model = build_model(skeleton.config, weights=weights)
    for name, tensor in model.backbone.state_dict().items():
        if not torch.equal(state[f"backbone.{name}"], tensor):
            raise InputError(f"The backbone in {path} differs from {weights} (first at {name}); give the DINOv2 "
                             f"weights the model was trained on with {option('--weights')}, or leave it out to keep "
                             "the checkpoint's backbone in the model file.")
    model.load_state_dict(state, strict=True)
    return model.eval()


def reference_card(path: Path, output: Path, backbone: str, checkpoint_sha256: str,
                   bands: list[int] | None) -> ModelCard:
    """The card of an imported model: ISPRS classes, the authors' input normalisation, window 266."""
    card = ModelCard(
        name=output.name.removesuffix(".safetensors"),
        description=(f"The authors' MoBaNet ({backbone}, reference profile) imported from {path.name}, a checkpoint "
                     "of sauryeo/MoBaNet train.py. Optical bands in the order of its training tiles (ISPRS "
                     "Vaihingen: IR, R, G; Potsdam: R, G, B), /255 then ImageNet mean/std; DSM min-max over the "
                     "whole raster."),
        dsm_normalization=replace(PROFILES["reference"].dsm_normalization), window=DEFAULT_WINDOW,
        training={"imported_from": str(path.resolve()), "checkpoint_sha256": checkpoint_sha256, "source": SOURCE})
    if bands:
        card.optical_bands = list(bands)
    return card


def import_checkpoint(path: str | Path, output: str | Path, backbone: str | None = None,
                      weights: str | Path | None = None, bands: list[int] | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
    """Convert a checkpoint of the authors' train.py into a MoBaNet model file (see module docstring)."""
    path, output = Path(path), Path(output)
    weights = Path(weights) if weights is not None else None
    check_writable(output, (path, *([weights] if weights else [])))
    progress = progress if progress is not None else Progress("quiet")
    with progress.task(4, "Importing", unit="step") as task:
        tensors = read_checkpoint(path)
        task.update()
        name = find_backbone(path, tensors, backbone)
        classifier = tensors.get("decoder.classifier.1.0.weight")
        classes, channels = (classifier.shape[:2] if classifier is not None and classifier.dim() == 4 else (6, 64))
        config = MoBaNetConfig(backbone=name, num_classes=int(classes), profile="reference",
                               decoder_channels=int(channels))
        skeleton = build_model(config, device="meta")
        check_layout(path, tensors, authors_layout(skeleton))
        if config.num_classes != 6:
            raise InputError(f"{path} predicts {config.num_classes} classes; `mobanet import` writes the card of "
                             "the authors' ISPRS setting (6 classes: impervious surfaces .. clutter).")
        task.update()
        model = _load(path, to_our_names(tensors, skeleton.backbone), skeleton, weights)
        task.update()
        card = reference_card(path, output, name, file_sha256(path), bands)
        save_model(output, model, card, full=weights is None)
        task.update()
    report = model.parameter_report()["all"]
    return {"output": str(output), "backbone": name, "adapter_only": weights is not None,
            "trainable_parameters": report["trainable"], "total_parameters": report["total"]}
