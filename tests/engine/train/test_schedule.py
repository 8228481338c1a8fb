"""AdamW groups and the per-iteration warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mobanet.train.schedule import WarmupCosine, build_optimizer, parameter_groups


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.gamma = nn.Parameter(torch.ones(4))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_no_weight_decay_on_biases_and_1d_parameters_and_frozen_ones_left_out():
    model = Small()
    decayed, undecayed = parameter_groups(model, 0.05)
    assert decayed["weight_decay"] == 0.05 and undecayed["weight_decay"] == 0.0
    assert [p.shape for p in decayed["params"]] == [model.conv.weight.shape]
    assert len(undecayed["params"]) == 4  # conv bias, norm weight + bias, gamma
    optimizer = build_optimizer(model, 2e-4, 0.05)
    assert optimizer.defaults["betas"] == (0.9, 0.999)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 5


def test_linear_warmup_then_cosine_to_min_lr():
    optimizer = build_optimizer(Small(), 1e-3, 0.05)
    schedule = WarmupCosine(optimizer, lr=1e-3, min_lr=1e-6, warmup=10, total=110)
    rates = []
    for _ in range(110):
        rates.append(optimizer.param_groups[0]["lr"])
        schedule.step()
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(b > a for a, b in zip(rates[:10], rates[1:10], strict=False))  # rising during warm-up
    assert all(b <= a for a, b in zip(rates[10:], rates[11:], strict=False))  # then never rising
    assert rates[10] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-6)
    assert rates[60] == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 50 / 99)))
    assert all(g["lr"] == rates[-1] or g["lr"] <= 1e-6 for g in optimizer.param_groups)


def test_schedule_state_resumes_at_the_same_rate():
    optimizer = build_optimizer(Small(), 1e-3, 0.05)
    schedule = WarmupCosine(optimizer, 1e-3, 0.0, 5, 50)
    for _ in range(17):
        schedule.step()
    fresh = WarmupCosine(build_optimizer(Small(), 1e-3, 0.05), 1e-3, 0.0, 5, 50)
    fresh.load_state_dict(schedule.state_dict())
    assert fresh.optimizer.param_groups[1]["lr"] == optimizer.param_groups[1]["lr"] == schedule.rate(17)
