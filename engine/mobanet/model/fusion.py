"""DGFM: difference-guided gated fusion of the two streams after each stage.

On the stage maps F_o, F_d (C channels, after the backbone's final norm):

    r_o = R_o F_o,  r_d = R_d F_d                  (1x1, no bias, C -> h, h = max(32, C/8))
    g = sigmoid(W2 GELU(GroupNorm(W1 [r_o; r_d; |r_o - r_d|])))
    F = LayerNorm(g * F_o + (1 - g) * F_d)

W2 and its bias start at zero, so the gate is exactly 0.5 before training:
fusion starts as an even mix and learns where one modality is more reliable.
``MeanFusion`` is the ablation without the gate (always 0.5). The authors'
layout (reference profile) has W1 without bias and GroupNorm(1, h).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a ``[B, C, H, W]`` map."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GatedFusion(nn.Module):
    """The DGFM gate (see module docstring)."""

    def __init__(self, channels: int, mix_bias: bool = True, groups: int | None = None):
        super().__init__()
        hidden = max(32, channels // 8)
        self.reduce_optical = nn.Conv2d(channels, hidden, 1, bias=False)  # R_o
        self.reduce_dsm = nn.Conv2d(channels, hidden, 1, bias=False)  # R_d
        self.mix = nn.Conv2d(3 * hidden, hidden, 1, bias=mix_bias)  # W1
        self.group_norm = nn.GroupNorm(groups or math.gcd(8, hidden), hidden)
        self.gate = nn.Conv2d(hidden, channels, 1)  # W2
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.norm = ChannelLayerNorm(channels)

    def gate_map(self, optical: torch.Tensor, dsm: torch.Tensor) -> torch.Tensor:
        """g in (0, 1), per channel and pixel: the weight of the optical map."""
        r_o, r_d = self.reduce_optical(optical), self.reduce_dsm(dsm)
        hidden = nn.functional.gelu(self.group_norm(self.mix(torch.cat([r_o, r_d, (r_o - r_d).abs()], dim=1))))
        return torch.sigmoid(self.gate(hidden))

    def forward(self, optical: torch.Tensor, dsm: torch.Tensor) -> torch.Tensor:
        gate = self.gate_map(optical, dsm)
        return self.norm(gate * optical + (1 - gate) * dsm)


class MeanFusion(nn.Module):
    """Ablation: the even mix DGFM starts from, never gated."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = ChannelLayerNorm(channels)

    def forward(self, optical: torch.Tensor, dsm: torch.Tensor) -> torch.Tensor:
        return self.norm(0.5 * (optical + dsm))


def build_fusion(kind: str, channels: int, mix_bias: bool = True, groups: int | None = None) -> nn.Module:
    if kind == "gated":
        return GatedFusion(channels, mix_bias, groups)
    if kind == "mean":
        return MeanFusion(channels)
    raise ValueError(f"unknown fusion {kind!r}")
