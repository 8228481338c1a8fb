"""Scoring a network on validation blocks, with both inputs or with one of them missing.

Validation runs the tiled inference of `mobanet segment` (`predict_array`) on
each block and scores it with `metrics.scores` (mIoU over the classes without
clutter). `modality_scores` repeats that with the DSM and then the optical
image marked missing (`Scene.hiding`, the same `hide` that MCRM trains with
and that `segment` uses without a DSM), for the model card.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from mobanet.card import ModelCard
from mobanet.metrics import confusion_matrix, scores
from mobanet.progress import Progress
from mobanet.raster import Scene, predict_array

MISSING_INPUTS = {"dsm_absent": "dsm", "optical_absent": "optical"}


@dataclass
class ValidationScene:
    """A block to score after each epoch: its scene (or crop) and its labels on the same grid."""

    scene: Scene
    labels: np.ndarray
    name: str


def summary_scores(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a `scores` result (what the log, the card and the plugin show)."""
    def number(value: Any) -> float | None:
        return None if value is None or not math.isfinite(float(value)) else float(value)

    per_class = result.get("per_class") or {}
    headline = {key: number(result.get(key)) for key in ("overall_accuracy", "mf1", "miou", "miou_all", "kappa")}
    headline["per_class_iou"] = {name: number(values.get("iou")) for name, values in per_class.items()}
    return headline


def validate(model: nn.Module, card: ModelCard, blocks: list[ValidationScene], batch_size: int, device: str,
             hidden: tuple[str, ...] = (), progress: Progress | None = None) -> dict[str, Any]:
    """`metrics.scores` of ``model`` over all ``blocks``, the ``hidden`` modalities marked missing."""
    count = card.num_classes
    matrix = np.zeros((count, count), dtype=np.int64)
    for item in blocks:
        scene = item.scene.hiding(*hidden) if hidden else item.scene
        classes, _ = predict_array(model, card, scene, window=card.window, batch_size=batch_size, device=device,
                                   progress=progress)
        matrix += confusion_matrix(classes, item.labels, count)
    return scores(matrix, card.class_names, card.mean_class_indices())


def modality_scores(model: nn.Module, card: ModelCard, blocks: list[ValidationScene], batch_size: int,
                    device: str, both: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Headline scores with both inputs (``both``, already measured) and with each input missing."""
    result = {"both": {k: v for k, v in both.items() if k != "per_class_iou"}}
    for key, modality in MISSING_INPUTS.items():
        headline = summary_scores(validate(model, card, blocks, batch_size, device, hidden=(modality,)))
        result[key] = {k: v for k, v in headline.items() if k != "per_class_iou"}
    return result
