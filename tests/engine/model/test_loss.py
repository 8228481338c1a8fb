"""Hard-pixel auxiliary supervision, with logits built by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from mobanet.model import MoBaNetLoss


def one_hot_logits(classes: torch.Tensor, num_classes: int = 3, scale: float = 10.0) -> torch.Tensor:
    """[B,H,W] class map -> logits [B,K,H,W] that predict exactly that map."""
    return scale * F.one_hot(classes, num_classes).permute(0, 3, 1, 2).float()


def test_aux_terms_ignore_pixels_the_main_head_gets_right():
    target = torch.tensor([[[0, 1], [2, 255]]])
    main_pred = torch.tensor([[[0, 2], [2, 0]]])  # right at (0,0) and (1,0), wrong at (0,1)
    aux = torch.randn(1, 3, 2, 2)
    outputs = {"logits": one_hot_logits(main_pred), "aux_optical": aux, "aux_dsm": 2 * aux}
    loss, parts = MoBaNetLoss(aux_weight=0.5)(outputs, target)

    only_hard = torch.tensor([[[255, 1], [255, 255]]])
    expected_aux_o = F.cross_entropy(aux, only_hard, ignore_index=255)
    expected_aux_d = F.cross_entropy(2 * aux, only_hard, ignore_index=255)
    expected_main = F.cross_entropy(outputs["logits"], target, ignore_index=255)
    assert parts["aux_optical"] == pytest.approx(expected_aux_o.item(), rel=1e-6)
    assert parts["aux_dsm"] == pytest.approx(expected_aux_d.item(), rel=1e-6)
    assert parts["main"] == pytest.approx(expected_main.item(), rel=1e-6)
    assert loss.item() == pytest.approx(expected_main.item() + 0.5 * (expected_aux_o + expected_aux_d).item(),
                                        rel=1e-6)
    # changing the aux logits at pixels the main head gets right changes nothing
    aux2 = aux.clone()
    aux2[..., 0, 0] += 5
    aux2[..., 1, 0] -= 5
    loss2, _ = MoBaNetLoss(aux_weight=0.5)({**outputs, "aux_optical": aux2, "aux_dsm": 2 * aux2}, target)
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)


def test_all_correct_gives_zero_aux_loss_with_gradient():
    target = torch.randint(0, 3, (2, 4, 4))
    aux = torch.randn(2, 3, 4, 4, requires_grad=True)
    outputs = {"logits": one_hot_logits(target), "aux_optical": aux, "aux_dsm": aux}
    loss, parts = MoBaNetLoss()(outputs, target.to(torch.uint8))
    assert parts["aux_optical"] == 0.0 and math.isfinite(loss.item())
    loss.backward()
    assert torch.equal(aux.grad, torch.zeros_like(aux))


def test_single_stream_outputs_use_main_loss_only_and_empty_labels_do_not_give_nan():
    logits = torch.randn(1, 3, 5, 5, requires_grad=True)
    target = torch.randint(0, 3, (1, 5, 5))
    loss, parts = MoBaNetLoss()({"logits": logits, "aux_optical": None, "aux_dsm": None}, target)
    assert set(parts) == {"main", "loss"}
    assert loss.item() == pytest.approx(F.cross_entropy(logits, target).item())
    empty, _ = MoBaNetLoss()({"logits": logits, "aux_optical": None, "aux_dsm": None}, torch.full((1, 5, 5), 255))
    assert empty.item() == 0.0
    empty.backward()
