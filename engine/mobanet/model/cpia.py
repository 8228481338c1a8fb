"""CPIA: the cross-modal prompt-injected adapter that runs before each stage.

Both streams' patch tokens (width C) meet in a shared prompt

    a = A_o x_o,  b = A_d x_d          (C -> rC, r = 0.25)
    u = U(P [a; b])                    (P: 2rC -> rC, U: rC -> C)
    p_o = gamma_o * u + beta_o,  p_d = gamma_d * u + beta_d

which each stream then receives. ``form="adapter"`` (the paper) injects the
prompt into a bottleneck adapter of the stream; ``form="direct"`` (the
authors' DINOv2 code) adds ``u + p`` to the tokens. The adapter's up
projection starts at zero, so with the default form an untrained CPIA leaves
the frozen backbone's features unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

PROMPT_RATIO = 0.25
ADAPTER_REDUCTION = 16


class PromptedAdapter(nn.Module):
    """Bottleneck adapter of one stream: x + up(dropout(relu(down(x) + prompt_proj(p))))."""

    def __init__(self, dim: int, dropout: float = 0.1):
        super().__init__()
        hidden = max(1, dim // ADAPTER_REDUCTION)
        self.down = nn.Linear(dim, hidden)
        self.prompt_proj = nn.Linear(dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, tokens: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.down(tokens) + self.prompt_proj(prompt))
        return tokens + self.up(self.dropout(hidden))


class CPIA(nn.Module):
    """Shared prompt from both streams, injected into each (see module docstring)."""

    def __init__(self, dim: int, form: str = "adapter"):
        super().__init__()
        if form not in ("adapter", "direct"):
            raise ValueError(f"unknown CPIA form {form!r}")
        self.form = form
        rank = max(1, int(dim * PROMPT_RATIO))
        self.reduce_optical = nn.Linear(dim, rank)  # A_o
        self.reduce_dsm = nn.Linear(dim, rank)  # A_d
        self.mix = nn.Linear(2 * rank, rank)  # P
        self.expand = nn.Linear(rank, dim)  # U
        self.gamma_optical = nn.Parameter(1.0 + 0.02 * torch.randn(dim))
        self.beta_optical = nn.Parameter(0.02 * torch.randn(dim))
        self.gamma_dsm = nn.Parameter(1.0 + 0.02 * torch.randn(dim))
        self.beta_dsm = nn.Parameter(0.02 * torch.randn(dim))
        if form == "adapter":
            self.adapter_optical = PromptedAdapter(dim)
            self.adapter_dsm = PromptedAdapter(dim)

    def forward(self, optical: torch.Tensor, dsm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch tokens ``[B, N, C]`` of each stream in, updated tokens out."""
        shared = self.expand(self.mix(torch.cat([self.reduce_optical(optical), self.reduce_dsm(dsm)], dim=-1)))
        prompt_optical = self.gamma_optical * shared + self.beta_optical
        prompt_dsm = self.gamma_dsm * shared + self.beta_dsm
        if self.form == "direct":
            return optical + shared + prompt_optical, dsm + shared + prompt_dsm
        return self.adapter_optical(optical, prompt_optical), self.adapter_dsm(dsm, prompt_dsm)
