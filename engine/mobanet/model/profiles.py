"""Architecture profiles: MoBaNet as this project builds it, or exactly as the authors released it.

Both are the same network (frozen DINOv2 dual stream, CPIA, DGFM, UPerNet,
auxiliary heads); they differ in details that change the parameters, and so
decide which checkpoints fit:

=====================  ==============================  ==========================================
                       ``mobanet`` (default)           ``reference`` (authors' DINOv2 code)
=====================  ==============================  ==========================================
CPIA                   adapter form (the paper)        direct form: u + p added to the tokens
1x1 projection to 256  one, shared by the 4 stages     one per stage
DGFM W1 / GroupNorm    with bias / gcd(8, h) groups    no bias / 1 group
UPerNet                ReLU; laterals conv-BN-ReLU;    ReLU6; laterals conv-BN; pooled branches
                       pooled branches conv-ReLU       conv-BN-ReLU6; bias-free classifier
auxiliary heads        decoder width (64)              projection width (256), bias-free
DSM input              0.5-99.5 % stretch, then        min-max over the whole raster, 0..1
                       standardised (mean 0.5, 0.25)
=====================  ==============================  ==========================================

The reference profile loads the checkpoints of the authors' ``train.py``
(`mobanet import`); why our default departs from it is in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mobanet.card import DsmNormalization
from mobanet.model.decoder import AUTHORS, OURS, HeadLayout


@dataclass(frozen=True)
class Profile:
    """One way of laying out MoBaNet (see module docstring)."""

    name: str
    cpia: str  # the CPIA form a model of this profile gets unless told otherwise
    shared_projection: bool  # one 1x1 projection for all stages, or one per stage
    fusion_mix_bias: bool  # DGFM's W1 has a bias
    fusion_groups: int | None  # DGFM's GroupNorm groups; None: gcd(8, h)
    head: HeadLayout
    aux_on_projection: bool  # auxiliary heads as wide as the projection (else as the decoder)
    dsm_normalization: DsmNormalization  # the DSM input of new models of this profile
    fixed: dict[str, Any] = field(default_factory=dict)  # configuration options the profile does not vary


PROFILES = {
    "mobanet": Profile("mobanet", cpia="adapter", shared_projection=True, fusion_mix_bias=True, fusion_groups=None,
                       head=OURS, aux_on_projection=False, dsm_normalization=DsmNormalization()),
    "reference": Profile(
        "reference", cpia="direct", shared_projection=False, fusion_mix_bias=False, fusion_groups=1, head=AUTHORS,
        aux_on_projection=True, dsm_normalization=DsmNormalization(low=0.0, high=100.0, mean=0.0, std=1.0),
        fixed={"cpia": "direct", "fusion": "gated", "streams": "dual", "feature_pyramid": False,
               "aux_heads": True, "projection_channels": 256}),
}
