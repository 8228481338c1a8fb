"""What a missing DSM costs a given model, in words: the note `segment` logs and returns.

The numbers come from the model card (`ModelCard.modality_scores`, measured on
the model's own validation data when it was trained), never from code: an
older model without them gets a plain sentence saying the cost is unknown.
"""

from __future__ import annotations

from typing import Any

from mobanet.card import ModelCard
from mobanet.errors import InputError


def _miou(scores: dict[str, Any], key: str) -> float | None:
    value = (scores.get(key) or {}).get("miou")
    return float(value) if isinstance(value, (int, float)) else None


def missing_dsm_cost(card: ModelCard) -> dict[str, float] | None:
    """mIoU with and without a DSM on the model's validation data, and the difference in points; None if unknown."""
    both, absent = _miou(card.modality_scores, "both"), _miou(card.modality_scores, "dsm_absent")
    if both is None or absent is None:
        return None
    return {"miou_with_dsm": both, "miou_without_dsm": absent, "points": round(100.0 * (both - absent), 1)}


def _trained_for_it(card: ModelCard) -> bool | None:
    """Whether training masked the DSM (MCRM on a dual-stream model); None when the card does not say."""
    mcrm = card.training.get("mcrm")
    if card.config.get("streams", "dual") != "dual":
        return False
    return None if mcrm is None else mcrm != "none"


def uses_dsm(card: ModelCard) -> bool:
    """Whether the model reads a DSM at all (an optical-only model loses nothing without one)."""
    return card.config.get("streams", "dual") != "optical"


def check_dsm_needed(card: ModelCard, model: str) -> None:
    """A model that sees only the DSM cannot run without one."""
    if card.config.get("streams") == "dsm":
        raise InputError(f"The model {model} uses only the DSM; give a DSM (it cannot run on the optical image).")


def missing_dsm_note(card: ModelCard, model: str, gap_share: float | None = None) -> str:
    """One or two sentences: the DSM (or the share ``gap_share`` of its pixels) is missing, and what that costs."""
    if not uses_dsm(card):
        return f"The model {model} does not use a DSM: nothing is lost without one."
    what = (f"The DSM has no data on {100 * gap_share:.1f} % of the scene; those pixels are predicted from the "
            "optical image alone" if gap_share is not None
            else "No DSM given: the model predicts from the optical image alone")
    cost = missing_dsm_cost(card)
    if cost is not None:
        note = (f"{what}. On its validation data, {model} scores mIoU {cost['miou_without_dsm']:.3f} without a "
                f"DSM against {cost['miou_with_dsm']:.3f} with one ({cost['points']:.1f} points less).")
    else:
        note = (f"{what}. The model card of {model} records no validation scores without a DSM (an older model, "
                "or one trained without validation data), so what this costs is unknown; expect lower accuracy "
                "than with a DSM.")
    if _trained_for_it(card) is False:
        note += " It was trained without modality masking (MCRM): it never saw a missing DSM, expect a large loss."
    return note
