"""The variants: explicit settings of the knobs under study, so that a changed default changes no row."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from mobanet.train import TrainOptions
from mobanet.train.options import feature_pyramid_for

KNOBS = ("streams", "mcrm", "mcrm_ratio", "aux_heads", "feature_pyramid")
AUTHORS = dict(streams="dual", mcrm="local", mcrm_ratio=0.25, aux_heads=True, feature_pyramid=False)

VARIANTS: dict[str, dict] = {
    "optical only": dict(AUTHORS, streams="optical", mcrm="none", aux_heads=False),
    "optical only + feature pyramid": dict(AUTHORS, streams="optical", mcrm="none", aux_heads=False,
                                           feature_pyramid=True),
    "MCRM local 25 % (authors')": dict(AUTHORS),
    "MCRM local 50 %": dict(AUTHORS, mcrm_ratio=0.5),
    "MCRM full 25 % (paper)": dict(AUTHORS, mcrm="full"),
    "MCRM full 50 %": dict(AUTHORS, mcrm="full", mcrm_ratio=0.5),
    "MCRM mix 25 %": dict(AUTHORS, mcrm="mix"),
    "MCRM mix 50 %": dict(AUTHORS, mcrm="mix", mcrm_ratio=0.5),
    "MCRM mix 75 %": dict(AUTHORS, mcrm="mix", mcrm_ratio=0.75),
    "no MCRM, aux loss kept": dict(AUTHORS, mcrm="none"),
    "no MCRM, no aux loss (paper's ablation)": dict(AUTHORS, mcrm="none", aux_heads=False),
    "MCRM mix 50 %, no aux loss": dict(AUTHORS, mcrm="mix", mcrm_ratio=0.5, aux_heads=False),
    "MCRM local 25 % + feature pyramid": dict(AUTHORS, feature_pyramid=True),
    "MCRM mix 50 % + feature pyramid": dict(AUTHORS, mcrm="mix", mcrm_ratio=0.5, feature_pyramid=True),
    "MCRM mix 75 % + feature pyramid": dict(AUTHORS, mcrm="mix", mcrm_ratio=0.75, feature_pyramid=True),
    "MCRM full 50 % + feature pyramid": dict(AUTHORS, mcrm="full", mcrm_ratio=0.5, feature_pyramid=True),
    "no MCRM, aux loss kept + feature pyramid": dict(AUTHORS, mcrm="none", feature_pyramid=True),
}

# The multi-seed run: the decision set (screening chose which MCRM rows are worth three seeds). The two
# optical-only rows bound what any model can score without a DSM; no MCRM + pyramid is the fused ceiling.
FINAL = (
    "optical only",
    "optical only + feature pyramid",
    "MCRM local 25 % (authors')",
    "MCRM mix 50 %",
    "no MCRM, aux loss kept",
    "no MCRM, no aux loss (paper's ablation)",
    "MCRM local 25 % + feature pyramid",
    "MCRM mix 50 % + feature pyramid",
    "no MCRM, aux loss kept + feature pyramid",
)


def train_defaults() -> dict:
    """The knobs as `mobanet train` sets them by default (TrainOptions)."""
    defaults = {f.name: f.default for f in fields(TrainOptions) if f.name in KNOBS}
    defaults["feature_pyramid"] = feature_pyramid_for(TrainOptions(scenes=[], output=Path("m.safetensors")))
    return {knob: defaults[knob] for knob in KNOBS}


def is_default(settings: dict) -> bool:
    return {knob: settings[knob] for knob in KNOBS} == train_defaults()
