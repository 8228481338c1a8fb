"""Optimiser and learning-rate schedule of the authors' recipe.

AdamW (lr 2e-4, betas 0.9/0.999, weight decay 0.05) with no decay on biases
and other 1-D parameters (norm scales, CPIA's gamma/beta), a linear warm-up
over the first epochs, then a cosine decay to ``min_lr``. The schedule is
stepped once per optimiser step (iteration), not per epoch, so warm-up is
smooth even when an epoch has a thousand iterations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BETAS = (0.9, 0.999)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into a decayed group (matrices, kernels) and an undecayed one (1-D, biases)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(".bias"):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only; the frozen backbone never enters the optimiser."""
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=BETAS)


class WarmupCosine:
    """Per-iteration learning rate: linear warm-up to ``lr``, then cosine down to ``min_lr``.

    Iteration ``i`` (0-based) of ``total`` gets ``lr * (i + 1) / warmup`` while
    ``i < warmup``, then ``min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2``
    with ``t`` going from 0 to 1 over the remaining iterations. Call `step`
    after each optimiser step; the state is one integer, so resuming is exact.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, min_lr: float, warmup: int, total: int):
        self.optimizer = optimizer
        self.lr, self.min_lr = lr, min_lr
        self.warmup, self.total = max(0, min(warmup, total)), max(1, total)
        self.iteration = 0
        self._apply()

    def rate(self, iteration: int) -> float:
        if iteration < self.warmup:
            return self.lr * (iteration + 1) / self.warmup
        span = max(1, self.total - self.warmup - 1)
        t = min(1.0, (iteration - self.warmup) / span)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))

    def current(self) -> float:
        return self.rate(self.iteration)

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.current()

    def step(self) -> None:
        self.iteration += 1
        self._apply()

    def state_dict(self) -> dict[str, int]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.iteration = int(state["iteration"])
        self._apply()
