"""MCRM: which samples lose which modality, and how much of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobanet.model import mask_modalities
from mobanet.model.masking import ABSENT, DSM_MASKED, NOT_MASKED, OPTICAL_MASKED, hide, random_rectangle


def ones(batch: int, height: int = 40, width: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(batch, 3, height, width), torch.ones(batch, 1, height, width)


def zeroed_share(x: torch.Tensor) -> torch.Tensor:
    """Share of zeroed pixels per sample."""
    return (x == 0).all(dim=1).flatten(1).float().mean(dim=1)


@pytest.mark.parametrize("mode", ["local", "full", "mix"])
def test_masks_the_requested_share_and_never_both_modalities(mode):
    optical, dsm = ones(8)
    for seed in range(20):
        masked_o, masked_d, which = mask_modalities(optical, dsm, 0.25, mode, torch.Generator().manual_seed(seed))
        assert which.dtype == torch.int64 and which.shape == (8,)
        assert int((which != NOT_MASKED).sum()) == 2  # 0.25 * 8
        assert int((which == OPTICAL_MASKED).sum()) == int((which == DSM_MASKED).sum()) == 1
        lost_o, lost_d = zeroed_share(masked_o) > 0, zeroed_share(masked_d) > 0
        assert not (lost_o & lost_d).any()
        assert torch.equal(lost_o, which == OPTICAL_MASKED) and torch.equal(lost_d, which == DSM_MASKED)
        if mode == "full":  # (mix: either kind, see below)
            assert (zeroed_share(masked_o)[lost_o] == 1).all() and (zeroed_share(masked_d)[lost_d] == 1).all()
    assert (optical == 1).all() and (dsm == 1).all()  # inputs untouched


def test_local_rectangles_cover_10_to_30_percent_with_bounded_aspect():
    generator = torch.Generator().manual_seed(1)
    shares = []
    for _ in range(300):
        top, left, h, w = random_rectangle(100, 150, generator)
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 150
        assert 0.5 - 0.05 <= h / w <= 2 + 0.05
        shares.append(h * w / (100 * 150))
    assert min(shares) >= 0.095 and max(shares) <= 0.305
    assert max(shares) - min(shares) > 0.15  # the whole range is used
    optical, dsm = ones(4, 100, 150)
    masked_o, masked_d, which = mask_modalities(optical, dsm, 1.0, "local", generator)
    shares = torch.where(which == OPTICAL_MASKED, zeroed_share(masked_o), zeroed_share(masked_d))
    assert ((shares >= 0.095) & (shares <= 0.305)).all()


def test_fractional_counts_are_rounded_stochastically():
    """Batch 2 at ratio 0.25: one sample masked in about half of the steps, never more."""
    optical, dsm = ones(2, 14, 14)
    generator = torch.Generator().manual_seed(0)
    counts = [int((mask_modalities(optical, dsm, 0.25, "full", generator)[2] > 0).sum()) for _ in range(400)]
    assert set(counts) == {0, 1}
    assert 0.4 < sum(counts) / 400 < 0.6


def test_ratio_zero_masks_nothing_and_bad_arguments_fail():
    optical, dsm = ones(4, 14, 14)
    masked_o, masked_d, which = mask_modalities(optical, dsm, 0.0)
    assert torch.equal(masked_o, optical) and torch.equal(masked_d, dsm) and (which == 0).all()
    with pytest.raises(ValueError, match="mode"):
        mask_modalities(optical, dsm, 0.25, "patch")
    with pytest.raises(ValueError, match="ratio"):
        mask_modalities(optical, dsm, 1.5)


def test_mix_hides_whole_modalities_and_rectangles():
    """``mix``: each picked sample loses its whole modality or a 10-30 % rectangle, both kinds over a run."""
    optical, dsm = ones(8, 50, 50)
    generator = torch.Generator().manual_seed(3)
    whole = partial = 0
    for _ in range(40):
        masked_o, masked_d, which = mask_modalities(optical, dsm, 0.5, "mix", generator)
        assert int((which != NOT_MASKED).sum()) == 4
        shares = torch.where(which == OPTICAL_MASKED, zeroed_share(masked_o), zeroed_share(masked_d))
        shares = shares[which != NOT_MASKED]
        assert ((shares == 1) | ((shares >= 0.095) & (shares <= 0.305))).all()
        whole += int((shares == 1).sum())
        partial += int((shares < 1).sum())
    assert whole > 40 and partial > 40  # about half each of 160 masked samples


@pytest.mark.parametrize("as_array", [torch.ones, lambda *shape: np.ones(shape, np.float32)])
def test_hide_marks_a_modality_or_its_pixels_missing_in_place(as_array):
    values = as_array(1, 3, 4, 5)
    where = np.zeros((4, 5), bool) if isinstance(values, np.ndarray) else torch.zeros(4, 5, dtype=torch.bool)
    where[1:3, 2:] = True
    assert hide(values, where) is values
    assert (values[..., 1:3, 2:] == ABSENT).all() and (values[..., 0, :] == 1).all()
    hide(values[0, 1:2])
    assert (values[0, 1] == ABSENT).all() and (values[0, 0, 0] == 1).all()
