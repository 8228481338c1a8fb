"""MoBaNet: a frozen ViT shared by the optical and DSM streams, fused stage by stage.

Data flow for the default (dual-stream) model, inputs padded to a multiple of
the patch size (14):

    optical -> frozen patch embed    \\
                                      > one batch of 2B tokens (+ class/register tokens, position table)
    DSM x3  -> trainable patch embed /
    for each of 4 stages: CPIA on the patch tokens, then the stage's frozen blocks on all 2B
                          -> final norm -> maps F_o, F_d -> DGFM -> fused map
    fused maps -> 1x1 projection -> (simple feature pyramid) -> UPerNet -> logits, cropped back
    stage-1 F_o, F_d -> the same projection -> auxiliary heads (training only)

The position table is resampled to the patch grid as DINOv2 itself does it
(`mobanet.model.position`), once per grid size.

Profiles (`mobanet.model.profiles`): ``"mobanet"``, this project's layout,
or ``"reference"``, the authors' released one (a projection per stage, their
UPerNet and auxiliary heads, direct CPIA), which loads their checkpoints.

Ablation variants (`MoBaNetConfig`): ``cpia="none"``, ``fusion="mean"``,
single streams ``"optical"``/``"dsm"``, ``"early"`` (one stream fed a
4-channel patch embedding), ``finetune_backbone=True`` (nothing frozen).
Single-stream variants have no CPIA, no fusion and no auxiliary heads.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mobanet import jsonfields
from mobanet.errors import InputError, ModelFileError
from mobanet.model.backbone import backbone_tokens, create_backbone, file_sha256, resolve_backbone, stage_taps
from mobanet.model.cpia import CPIA
from mobanet.model.decoder import AuxHead, SimpleFeaturePyramid, UPerHead, resize
from mobanet.model.fusion import build_fusion
from mobanet.model.position import INTERPOLATIONS, PositionTables
from mobanet.model.profiles import PROFILES
from mobanet.wording import option

CHOICES = {
    "cpia": ("adapter", "direct", "none"),
    "fusion": ("gated", "mean"),
    "streams": ("dual", "optical", "dsm", "early"),
}

# Options added after models were saved, with the value those older files were trained with.
LEGACY_DEFAULTS = {"pos_embed_interpolation": "timm"}


@dataclass
class MoBaNetConfig:
    """Everything needed to rebuild the network; stored in the model card (``ModelCard.config``)."""

    backbone: str = "tiny"
    num_classes: int = 6
    profile: str = "mobanet"  # "mobanet" | "reference" (the authors' released layout; see mobanet.model.profiles)
    cpia: str | None = None  # "adapter" (paper) | "direct" (authors' DINOv2 code) | "none"; None: the profile's
    fusion: str = "gated"  # "gated" (DGFM) | "mean"
    streams: str = "dual"  # "dual" | "optical" | "dsm" | "early" (4-channel input)
    finetune_backbone: bool = False
    feature_pyramid: bool = False
    decoder_channels: int = 64
    projection_channels: int = 256
    aux_heads: bool = True
    pos_embed_interpolation: str = "dinov2"  # "dinov2" (Meta's, exact) | "timm" (files saved before it was recorded)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise InputError(f"Model profile {self.profile!r} is not one of {', '.join(PROFILES)}.")
        if self.cpia is None:
            self.cpia = PROFILES[self.profile].cpia
        for name, allowed in [*CHOICES.items(), ("pos_embed_interpolation", INTERPOLATIONS)]:
            if getattr(self, name) not in allowed:
                raise InputError(f"Model option {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}.")
        for name, value in PROFILES[self.profile].fixed.items():
            if getattr(self, name) != value:
                raise InputError(f"The {self.profile} profile is the authors' released model, which has "
                                 f"{name} {value!r}, not {getattr(self, name)!r}; leave "
                                 f"{option('--' + name.replace('_', '-'))} out or use {option('--profile')} mobanet.")
        if self.num_classes < 1:
            raise InputError(f"A model needs at least one class, got num_classes={self.num_classes}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoBaNetConfig:
        """A stored configuration; keys it predates take the behaviour it was trained with (`LEGACY_DEFAULTS`)."""
        data = {**LEGACY_DEFAULTS, **data}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFileError(f"The model configuration has unknown keys {unknown}; "
                                 "the file was written by a newer or different engine, update mobanet.")
        try:
            for spec in fields(cls):  # JSON types first: "6" is not a class count, 1 is not true
                if spec.name in data:
                    value, name = data[spec.name], f"config.{spec.name}"
                    if isinstance(spec.default, bool):
                        jsonfields.flag(value, name)
                    elif isinstance(spec.default, int):
                        jsonfields.whole(value, name, minimum=1)
                    else:
                        jsonfields.text(value, name, choices=CHOICES.get(spec.name), nonempty=True)
            return cls(**data)
        except (InputError, jsonfields.FieldError) as exc:
            raise ModelFileError(f"The model configuration is invalid: {exc}.") from exc

    @property
    def dual(self) -> bool:
        return self.streams == "dual"


def _trainable_copy(module: nn.Module) -> nn.Module:
    module = copy.deepcopy(module)
    module.requires_grad_(True)
    return module


def _four_channel_patch_embed(patch_embed: nn.Module) -> nn.Module:
    """Early fusion input: RGB filters copied, the DSM channel starts at their mean."""
    embed = _trainable_copy(patch_embed)
    rgb = embed.proj
    proj = nn.Conv2d(4, rgb.out_channels, rgb.kernel_size, rgb.stride, bias=rgb.bias is not None,
                     device=rgb.weight.device, dtype=rgb.weight.dtype)
    with torch.no_grad():
        proj.weight[:, :3] = rgb.weight
        proj.weight[:, 3:] = rgb.weight.mean(dim=1, keepdim=True)
        if rgb.bias is not None:
            proj.bias.copy_(rgb.bias)
    embed.proj = proj
    return embed


class MoBaNet(nn.Module):
    """See module docstring. Build with `build_model`; ``forward`` for inference, ``forward_train`` for training."""

    def __init__(self, config: MoBaNetConfig, backbone: nn.Module, backbone_weights_sha256: str | None = None,
                 backbone_pretrained: bool = False):
        super().__init__()
        self.config = config
        self.backbone_weights_sha256 = backbone_weights_sha256
        self.backbone_pretrained = backbone_pretrained  # False: random weights, only a full file can keep them
        self.patch_size = int(backbone.patch_embed.patch_size[0])
        self.taps = stage_taps(len(backbone.blocks))
        self.position_tables = PositionTables(config.pos_embed_interpolation)
        profile = PROFILES[config.profile]
        width, projected = backbone.embed_dim, config.projection_channels

        self.backbone = backbone
        self.backbone.requires_grad_(config.finetune_backbone)
        if config.streams in ("dual", "dsm"):
            self.dsm_patch_embed = _trainable_copy(backbone.patch_embed)
        if config.streams == "early":
            self.early_patch_embed = _four_channel_patch_embed(backbone.patch_embed)
        if config.dual and config.cpia != "none":
            self.cpia = nn.ModuleList(CPIA(width, config.cpia) for _ in self.taps)
        if config.dual:
            self.fusion = nn.ModuleList(build_fusion(config.fusion, width, profile.fusion_mix_bias,
                                                     profile.fusion_groups) for _ in self.taps)
        if profile.shared_projection:
            self.projection = nn.Conv2d(width, projected, 1, bias=False)
        else:
            self.projections = nn.ModuleList(nn.Conv2d(width, projected, 1, bias=False) for _ in self.taps)
        if config.feature_pyramid:
            self.pyramid = SimpleFeaturePyramid(projected)
        self.head = UPerHead(projected, config.decoder_channels, config.num_classes, profile.head)
        if config.dual and config.aux_heads:
            aux_width = projected if profile.aux_on_projection else config.decoder_channels
            self.aux_heads = nn.ModuleDict({name: AuxHead(projected, aux_width, config.num_classes, profile.head)
                                            for name in ("optical", "dsm")})
        self.train(False)

    # -- modes and tensors --------------------------------------------------------
    def train(self, mode: bool = True) -> MoBaNet:
        """Like `nn.Module.train`, but a frozen backbone always stays in eval mode."""
        super().train(mode)
        if not self.config.finetune_backbone:
            self.backbone.eval()
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor training changes (parameters and BatchNorm statistics): all but the frozen backbone."""
        state = self.state_dict()
        if self.config.finetune_backbone:
            return state
        return {k: v for k, v in state.items() if not k.startswith("backbone.")}

    def parameter_report(self) -> dict[str, dict[str, int]]:
        """Trainable and total parameter counts per part (backbone, cpia, fusion, head, ...) and ``all``."""
        report: dict[str, dict[str, int]] = {}
        for name, module in self.named_children():
            params = list(module.parameters())
            report[name] = {"trainable": sum(p.numel() for p in params if p.requires_grad),
                            "total": sum(p.numel() for p in params)}
        report["all"] = {key: sum(part[key] for part in report.values()) for key in ("trainable", "total")}
        return report

    # -- encoder ------------------------------------------------------------------
    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.patch_size, -width % self.patch_size
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def _run_blocks(self, blocks: list[nn.Module], tokens: torch.Tensor, streams: int, batched: bool) -> torch.Tensor:
        if batched or streams == 1:
            for block in blocks:
                tokens = block(tokens)
            return tokens
        parts = list(tokens.chunk(streams))
        for block in blocks:
            parts = [block(part) for part in parts]
        return torch.cat(parts)

    def encode(self, optical: torch.Tensor, dsm: torch.Tensor, batched: bool = True) -> list[list[torch.Tensor]]:
        """Stage maps ``[B, C, h, w]`` per stream: ``[optical_maps, dsm_maps]`` (dual) or ``[maps]``.

        Inputs must already be padded to a multiple of the patch size. Dual
        streams share each frozen block as one batch of 2B; ``batched=False``
        calls every block once per stream instead (same result, slower; kept
        to verify and benchmark the batched path).
        """
        backbone, streams = self.backbone, self.config.streams
        if streams == "dual":
            grid = torch.cat([backbone.patch_embed(optical), self.dsm_patch_embed(dsm.expand(-1, 3, -1, -1))])
        elif streams == "optical":
            grid = backbone.patch_embed(optical)
        elif streams == "dsm":
            grid = self.dsm_patch_embed(dsm.expand(-1, 3, -1, -1))
        else:
            grid = self.early_patch_embed(torch.cat([optical, dsm], dim=1))
        count = 2 if streams == "dual" else 1
        batch, grid_h, grid_w = optical.shape[0], grid.shape[1], grid.shape[2]
        prefix = backbone.num_prefix_tokens
        tokens = backbone_tokens(backbone, grid, self.position_tables(backbone, (grid_h, grid_w)))

        maps: list[list[torch.Tensor]] = [[] for _ in range(count)]
        start = 0
        for stage, tap in enumerate(self.taps):
            if hasattr(self, "cpia"):
                patches_o, patches_d = self.cpia[stage](tokens[:batch, prefix:], tokens[batch:, prefix:])
                tokens = torch.cat([tokens[:, :prefix], torch.cat([patches_o, patches_d])], dim=1)
            tokens = self._run_blocks(list(backbone.blocks[start:tap + 1]), tokens, count, batched)
            start = tap + 1
            normed = backbone.norm(tokens[:, prefix:])
            stage_map = normed.transpose(1, 2).reshape(normed.shape[0], -1, grid_h, grid_w)
            for i, part in enumerate(stage_map.chunk(count)):
                maps[i].append(part)
        return maps

    # -- decoder ------------------------------------------------------------------
    def project(self, stage: int, stage_map: torch.Tensor) -> torch.Tensor:
        """The 1x1 projection of a stage map to the decoder's input width (shared, or the stage's own)."""
        return self.projection(stage_map) if hasattr(self, "projection") else self.projections[stage](stage_map)

    def forward_train(self, optical: torch.Tensor, dsm: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Logits ``[B, K, H, W]`` and, for dual streams with auxiliary heads, each modality's aux logits."""
        return self._decode(optical, dsm, with_aux=True)

    def forward(self, optical: torch.Tensor, dsm: torch.Tensor) -> torch.Tensor:
        """Normalised ``optical`` [B,3,H,W] and ``dsm`` [B,1,H,W], any H and W, to logits [B,K,H,W]."""
        return self._decode(optical, dsm, with_aux=False)["logits"]

    def _decode(self, optical: torch.Tensor, dsm: torch.Tensor, with_aux: bool) -> dict[str, torch.Tensor | None]:
        if optical.shape[0] != dsm.shape[0] or optical.shape[-2:] != dsm.shape[-2:]:
            raise InputError(f"Optical {tuple(optical.shape)} and DSM {tuple(dsm.shape)} windows do not match.")
        if self.training and optical.shape[0] < 2 and PROFILES[self.config.profile].head.pooled_norm:
            raise InputError("The reference profile batch-normalises 1x1 pooled maps, which needs 2 or more windows "
                             f"per training batch; use {option('--batch-size')} 2 or more.")
        height, width = optical.shape[-2:]
        optical, dsm = self._pad(optical), self._pad(dsm)
        padded = tuple(optical.shape[-2:])
        stream_maps = self.encode(optical, dsm)
        if len(stream_maps) == 2:
            stages = [fuse(o, d) for fuse, o, d in zip(self.fusion, *stream_maps, strict=True)]
        else:
            stages = stream_maps[0]
        projected = [self.project(stage, s) for stage, s in enumerate(stages)]
        if hasattr(self, "pyramid"):
            projected = self.pyramid(projected)
        outputs: dict[str, torch.Tensor | None] = {
            "logits": resize(self.head(projected), padded)[..., :height, :width],
            "aux_optical": None, "aux_dsm": None}
        if with_aux and hasattr(self, "aux_heads"):
            for name, maps in zip(("optical", "dsm"), stream_maps, strict=True):
                aux = self.aux_heads[name](self.project(0, maps[0]))
                outputs[f"aux_{name}"] = resize(aux, padded)[..., :height, :width]
        return outputs


def build_model(config: MoBaNetConfig, weights: str | Path | None = None, pretrained: bool = False,
                random_init: bool = False, device: str | torch.device | None = None) -> MoBaNet:
    """A MoBaNet on the named backbone, in eval mode.

    Backbone weights: ``weights`` (a local Meta ``.pth`` or timm
    ``.safetensors``), ``pretrained=True`` (download through timm), or
    ``random_init=True``; "tiny" is random unless given a file. Anything else
    raises `WeightsError` saying which file to download. ``device="meta"``
    allocates nothing (parameter counting for ViT-g).
    """
    spec = resolve_backbone(config.backbone)
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            backbone = create_backbone(spec, random_init=True)
            return MoBaNet(config, backbone)
    backbone = create_backbone(spec, weights=weights, pretrained=pretrained, random_init=random_init)
    sha = file_sha256(weights) if weights is not None else None
    model = MoBaNet(config, backbone, backbone_weights_sha256=sha, backbone_pretrained=weights is not None or
                    (pretrained and spec.name != "tiny"))
    return model.to(device) if device is not None else model
