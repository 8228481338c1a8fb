"""The frozen vision foundation model: names, weights and stage taps.

MoBaNet runs a timm ``VisionTransformer`` (DINOv2 by default) block by block
itself, because CPIA acts between stages. This module only turns a backbone
name into a timm model with the right weights and says where the stages end.

Names: timm names (``vit_large_patch14_dinov2.lvd142m``), the aliases
``dinov2_vits14`` .. ``dinov2_vitg14`` (and ``..._reg4``), and ``tiny``: the
DINOv2 ViT-S/14 structure (class token, LayerScale, 518 px position grid)
shrunk to width 128, depth 4 and 4 heads (about 1 M parameters), small enough
to train from scratch on a CPU in minutes for tests and the demo model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from mobanet.errors import InputError, WeightsError
from mobanet.model.hub import HubUnavailable, pretrained_weights_file
from mobanet.wording import option

ALIASES = {
    "dinov2_vits14": "vit_small_patch14_dinov2.lvd142m",
    "dinov2_vitb14": "vit_base_patch14_dinov2.lvd142m",
    "dinov2_vitl14": "vit_large_patch14_dinov2.lvd142m",
    "dinov2_vitg14": "vit_giant_patch14_dinov2.lvd142m",
    "dinov2_vits14_reg4": "vit_small_patch14_reg4_dinov2.lvd142m",
    "dinov2_vitb14_reg4": "vit_base_patch14_reg4_dinov2.lvd142m",
    "dinov2_vitl14_reg4": "vit_large_patch14_reg4_dinov2.lvd142m",
    "dinov2_vitg14_reg4": "vit_giant_patch14_reg4_dinov2.lvd142m",
}
TINY = "tiny"
TINY_ARCHITECTURE = dict(embed_dim=128, depth=4, num_heads=4)


@dataclass(frozen=True)
class BackboneSpec:
    """What to ask timm for: a registered name plus architecture overrides."""

    name: str  # as given by the user and recorded in the model card
    timm_name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_url(self) -> str | None:
        """Where the original weights can be downloaded by hand (Meta's URL for DINOv2)."""
        if self.name == TINY:
            return None
        cfg = timm.models.get_pretrained_cfg(self.timm_name)
        return getattr(cfg, "url", None) or None


def resolve_backbone(name: str) -> BackboneSpec:
    """Turn a backbone name or alias into a `BackboneSpec`; unknown names raise `InputError`."""
    if name == TINY:
        return BackboneSpec(TINY, "vit_small_patch14_dinov2.lvd142m", dict(TINY_ARCHITECTURE))
    timm_name = ALIASES.get(name, name)
    if not timm.is_model(timm_name):
        raise InputError(
            f"Unknown backbone {name!r}; set {option('--backbone')} to 'tiny', one of {', '.join(ALIASES)}, or a "
            "timm DINOv2 name such as 'vit_large_patch14_dinov2.lvd142m'.")
    return BackboneSpec(name, timm_name)


def stage_taps(depth: int) -> list[int]:
    """Index of the last block of each of the 4 stages (ViT-S/B: 2,5,8,11; L: 5,11,17,23; g: 9,19,29,39)."""
    if depth < 4:
        raise InputError(f"A backbone needs at least 4 blocks for 4 stages, this one has {depth}.")
    return [(i + 1) * depth // 4 - 1 for i in range(4)]


def file_sha256(path: str | Path) -> str:
    """Hash of a weights file, recorded in model cards so adapter-only files meet their backbone."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def missing_weights_message(spec: BackboneSpec, reason: str = "") -> str:
    """What to download and where to give it; ``reason`` says why the hub cannot provide it now."""
    url = spec.weights_url
    where = f"download {url}" if url else f"get the timm weights of {spec.timm_name} (model.safetensors)"
    why = f" and they cannot be downloaded now ({reason})" if reason else ""
    return (f"Backbone {spec.name!r} needs pretrained weights{why}: {where} and give the file with "
            f"{option('--weights')}.")


def create_backbone(spec: BackboneSpec, weights: str | Path | None = None, pretrained: bool = False,
                    random_init: bool = False) -> VisionTransformer:
    """Build the timm ViT from a local file, a download or random init.

    Its patch embedding accepts any multiple of the patch size
    (``dynamic_img_size``); MoBaNet positions the tokens itself
    (`backbone_tokens`, `mobanet.model.position`), never through timm's
    per-forward resampling.

    ``weights`` may be an original Meta DINOv2 ``.pth`` (loaded with
    ``weights_only=True``) or a timm ``.safetensors``; timm's checkpoint filter
    renames Meta keys and resamples the position embedding. ``pretrained``
    takes the file timm would download (`mobanet.model.hub`). Without a source
    a non-tiny backbone raises `WeightsError` naming the file to download.
    """
    kwargs: dict[str, Any] = dict(num_classes=0, dynamic_img_size=True, **spec.overrides)
    if weights is None and pretrained and spec.name != TINY:
        weights = _hub_weights(spec)
    if weights is not None:
        path = Path(weights)
        if path.is_dir():
            raise WeightsError(f"Backbone weights {path} is a folder; give the weights file itself (a DINOv2 .pth "
                               "or a timm .safetensors).")
        if not path.is_file():
            raise WeightsError(f"Backbone weights file {path} does not exist; {missing_weights_message(spec)}")
        try:
            model = timm.create_model(spec.timm_name, pretrained=True,
                                      pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
        except (RuntimeError, KeyError, ValueError, OSError, EOFError) as exc:
            raise WeightsError(
                f"Cannot load backbone weights {path} into {spec.name!r} ({spec.timm_name}): {exc}. "
                "Check that the file is the DINOv2 checkpoint of this backbone size.") from exc
    elif random_init or spec.name == TINY:
        model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    else:
        raise WeightsError(missing_weights_message(spec))
    if not isinstance(model, VisionTransformer):
        raise InputError(f"Backbone {spec.name!r} is a {type(model).__name__}, not a ViT; use a DINOv2 ViT.")
    return model


def _hub_weights(spec: BackboneSpec) -> Path:
    """The pretrained weights timm would download, from the hub cache or the hub; fails at once when offline."""
    try:
        return pretrained_weights_file(spec.timm_name)
    except HubUnavailable as exc:
        raise WeightsError(missing_weights_message(spec, str(exc))) from exc


def backbone_tokens(backbone: VisionTransformer, patch_grid: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The token sequence the first block expects: prefix tokens (class, registers) and patches, positioned.

    ``patch_grid`` is a patch embedding output ``[B, h, w, C]`` and ``table``
    the position table for that grid (`mobanet.model.position`), laid out as
    timm stores it: with a class slot for plain DINOv2, patches only for
    register models (whose class token already holds its position). Returns
    ``[B, prefix + h*w, C]``.
    """
    batch, height, width, channels = patch_grid.shape
    patches = patch_grid.reshape(batch, height * width, channels)
    prefix = [token.expand(batch, -1, -1) for token in (backbone.cls_token, backbone.reg_token) if token is not None]
    if backbone.no_embed_class:
        tokens = torch.cat([*prefix, patches + table], dim=1)
    else:
        tokens = torch.cat([*prefix, patches], dim=1) + table
    tokens = backbone.patch_drop(backbone.pos_drop(tokens))
    return backbone.norm_pre(tokens)
