"""Decoder: UPerNet over the four fused stage maps, plus auxiliary heads.

All four ViT stages come at 1/14 of the input. UPerNet (pyramid pooling on
the last stage, lateral 1x1 convs, top-down sum, 3x3 convs, concatenation,
3x3 bottleneck, dropout, 1x1 classifier) turns them into logits; the
optional simple feature pyramid first rescales the stages by x4, x2, x1 and
x0.5, as ViTDet does for plain backbones. Auxiliary heads (training only)
classify each modality's stage-1 map on its own.

`HeadLayout` holds the details in which UPerNet implementations differ:
`OURS`, and `AUTHORS` (the reference profile: the authors' released head).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

POOL_SCALES = (1, 2, 3, 6)


@dataclass(frozen=True)
class HeadLayout:
    """How the UPerNet and auxiliary heads are wired where implementations differ."""

    activation: Callable[[], nn.Module] = partial(nn.ReLU, inplace=True)
    lateral_activation: bool = True  # laterals conv-BN-act; False: conv-BN
    pooled_norm: bool = False  # pyramid-pooling branches conv-BN-act; False: conv (with bias)-act
    classifier_bias: bool = True  # the 1x1 classifiers of the main and auxiliary heads
    aux_dropout: Callable[[float], nn.Module] = nn.Dropout2d


OURS = HeadLayout()
AUTHORS = HeadLayout(activation=nn.ReLU6, lateral_activation=False, pooled_norm=True, classifier_bias=False,
                     aux_dropout=nn.Dropout)


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int,
                activation: Callable[[], nn.Module] | None) -> nn.Sequential:
    """Conv (no bias) - BatchNorm - activation; ``activation=None`` stops after the BatchNorm."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
              nn.BatchNorm2d(out_channels)]
    return nn.Sequential(*layers, activation()) if activation is not None else nn.Sequential(*layers)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SimpleFeaturePyramid(nn.Module):
    """Rescale the four same-scale stage maps by x4, x2, x1 and x0.5."""

    def __init__(self, channels: int):
        super().__init__()
        self.up4 = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 2, stride=2), nn.BatchNorm2d(channels), nn.GELU(),
            nn.ConvTranspose2d(channels, channels, 2, stride=2))
        self.up2 = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.down2 = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.up4(maps[0]), self.up2(maps[1]), maps[2], self.down2(maps[3])]


class PyramidPooling(nn.Module):
    """PPM on the deepest map: pooled context at 1x1, 2x2, 3x3 and 6x6, upsampled and concatenated.

    Our pooled branches have no BatchNorm: a 1x1 pooled map of a single
    sample has no batch statistics, and training batches may be that small
    (the authors' layout has it, and so needs batches of 2 or more).
    """

    def __init__(self, in_channels: int, channels: int, layout: HeadLayout = OURS):
        super().__init__()
        self.branches = nn.ModuleList(self._branch(scale, in_channels, channels, layout) for scale in POOL_SCALES)
        self.bottleneck = conv_bn_act(in_channels + len(POOL_SCALES) * channels, channels, 3, layout.activation)

    @staticmethod
    def _branch(scale: int, in_channels: int, channels: int, layout: HeadLayout) -> nn.Sequential:
        if layout.pooled_norm:
            return nn.Sequential(nn.AdaptiveAvgPool2d(scale), *conv_bn_act(in_channels, channels, 1, layout.activation))
        return nn.Sequential(nn.AdaptiveAvgPool2d(scale), nn.Conv2d(in_channels, channels, 1), layout.activation())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [resize(branch(x), size) for branch in self.branches]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UPerHead(nn.Module):
    """UPerNet: PPM + FPN over four maps, fused at the finest scale, then classified."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, layout: HeadLayout = OURS,
                 dropout: float = 0.1):
        super().__init__()
        lateral_activation = layout.activation if layout.lateral_activation else None
        self.ppm = PyramidPooling(in_channels, channels, layout)
        self.laterals = nn.ModuleList(conv_bn_act(in_channels, channels, 1, lateral_activation) for _ in range(3))
        self.fpn_convs = nn.ModuleList(conv_bn_act(channels, channels, 3, layout.activation) for _ in range(3))
        self.bottleneck = conv_bn_act(4 * channels, channels, 3, layout.activation)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=layout.classifier_bias)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        levels = [lateral(m) for lateral, m in zip(self.laterals, maps[:3], strict=True)] + [self.ppm(maps[3])]
        for i in range(3, 0, -1):  # top-down: coarse context into finer levels
            levels[i - 1] = levels[i - 1] + resize(levels[i], levels[i - 1].shape[-2:])
        outs = [conv(level) for conv, level in zip(self.fpn_convs, levels[:3], strict=True)] + [levels[3]]
        size = outs[0].shape[-2:]
        fused = self.bottleneck(torch.cat([resize(o, size) for o in outs], dim=1))
        return self.classifier(self.dropout(fused))


class AuxHead(nn.Module):
    """Training-only classifier on one modality's stage-1 map: 3x3 conv-BN-ReLU, dropout, 1x1."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, layout: HeadLayout = OURS,
                 dropout: float = 0.1):
        super().__init__()
        self.conv = conv_bn_act(in_channels, channels, 3, layout.activation)
        self.dropout = layout.aux_dropout(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=layout.classifier_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.conv(x)))
