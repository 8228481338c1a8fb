"""A missing modality, and MCRM (modality-conditional random masking) that trains for it.

What "missing" means is defined once, here: `hide` sets the normalised input
of the missing modality (or of its missing pixels) to `ABSENT`, zero, the
card's mean value. Training (MCRM), inference without a DSM or with DSM gaps
(`mobanet.raster.Scene`) and the ablation benchmark all call it, so the
network meets a missing input at inference exactly as it learnt it.

MCRM: a share ``ratio`` of each batch is picked; of those, half lose their
optical input and half their DSM, never both, so the network learns to lean on
whichever modality is left. ``mode="local"`` (the authors' released default)
hides one random rectangle covering 10-30 % of the image with aspect ratio
0.5-2; ``mode="full"`` (the paper) hides the whole modality; ``mode="mix"``
does either, with equal chance, for each picked sample.

Rounding: ``ratio * B`` samples are masked in expectation. The integer part
is always masked and the fractional part by a coin flip (stochastic
rounding), so a batch of 2 at ratio 0.25 masks one sample every other step
instead of every step or never. With an odd count the extra sample loses
optical or DSM with equal chance.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

NOT_MASKED, OPTICAL_MASKED, DSM_MASKED = 0, 1, 2
MODES = ("local", "full", "mix")
AREA_RANGE = (0.10, 0.30)
ASPECT_RANGE = (0.5, 2.0)
ABSENT = 0.0  # normalised input value of a missing modality or pixel

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def hide(values: Array, where: Array | None = None) -> Array:
    """Mark a modality missing, in place: ``values`` [..., C, H, W] (normalised, numpy or torch) become `ABSENT`.

    Everywhere, or only where the bool [H, W] ``where`` is True (DSM gaps).
    Returns ``values``.
    """
    if where is None:
        values[...] = ABSENT
    else:
        values[..., where] = ABSENT
    return values


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def random_rectangle(height: int, width: int, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a rectangle covering 10-30 % of the image, aspect (h/w) 0.5-2."""
    area = _uniform(*AREA_RANGE, generator) * height * width
    aspect = math.exp(_uniform(math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1]), generator))
    h = min(height, max(1, round(math.sqrt(area * aspect))))
    w = min(width, max(1, round(area / h)))
    h = min(height, max(1, round(area / w)))  # keep the area when a side was clipped
    top = int(torch.randint(0, height - h + 1, (), generator=generator))
    left = int(torch.randint(0, width - w + 1, (), generator=generator))
    return top, left, h, w


def mask_modalities(optical: torch.Tensor, dsm: torch.Tensor, ratio: float = 0.25, mode: str = "local",
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked copies of ``optical`` [B,3,H,W] and ``dsm`` [B,1,H,W], and ``which`` int64 [B].

    ``which``: 0 untouched, 1 optical masked, 2 DSM masked. Inputs are not modified.
    """
    if mode not in MODES:
        raise ValueError(f"unknown masking mode {mode!r}; use one of {', '.join(MODES)}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"masking ratio must be in [0, 1], got {ratio}")
    batch, height, width = optical.shape[0], optical.shape[-2], optical.shape[-1]
    expected = ratio * batch
    count = int(expected)
    if float(torch.rand((), generator=generator)) < expected - count:
        count += 1
    count = min(count, batch)
    picked = torch.randperm(batch, generator=generator)[:count].tolist()
    optical_count = count // 2 + (count % 2 if float(torch.rand((), generator=generator)) < 0.5 else 0)

    optical, dsm = optical.clone(), dsm.clone()
    which = torch.zeros(batch, dtype=torch.int64)
    for rank, index in enumerate(picked):
        target = optical if rank < optical_count else dsm
        which[index] = OPTICAL_MASKED if rank < optical_count else DSM_MASKED
        whole = mode == "full" or (mode == "mix" and float(torch.rand((), generator=generator)) < 0.5)
        if whole:
            hide(target[index])
        else:
            top, left, h, w = random_rectangle(height, width, generator)
            hide(target[index, :, top:top + h, left:left + w])
    return optical, dsm, which.to(optical.device)
