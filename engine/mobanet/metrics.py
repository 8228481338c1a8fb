"""Confusion matrix and the ISPRS scores computed from it.

The ISPRS habit, followed by the multimodal literature: overall accuracy over
all classes; per-class precision, recall, F1 and IoU; mean F1 and mIoU over
the classes without clutter (``mf1``/``miou``), and over all classes
(``mf1_all``/``miou_all``, the mmsegmentation habit); Cohen's kappa. An eroded
reference ("noBoundary") ignores pixels near class borders, where a label's
position is uncertain by a pixel or two.

Undefined scores: a class absent from both prediction and reference has NaN
for every score (JSON null) and is left out of the means; a class present in
only one of them scores 0 where a denominator is zero (e.g. precision of a
class never predicted). Matrices accumulate over tiles and scenes by summing.
"""

from __future__ import annotations

import math

import numpy as np

from mobanet.classes import IGNORE_INDEX


def confusion_matrix(prediction: np.ndarray, reference: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """int64 [K, K] counts: rows are reference classes, columns predicted classes.

    Pixels where either array holds ``ignore_index`` are skipped. Other values
    outside 0..K-1 raise ValueError (callers turn them into user errors first).
    """
    prediction, reference = np.asarray(prediction).ravel(), np.asarray(reference).ravel()
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction has {prediction.size} pixels, reference {reference.size}")
    keep = (prediction != ignore_index) & (reference != ignore_index)
    prediction, reference = prediction[keep].astype(np.int64), reference[keep].astype(np.int64)
    if prediction.size and (min(prediction.min(), reference.min()) < 0
                            or max(prediction.max(), reference.max()) >= num_classes):
        raise ValueError(f"class indices outside 0..{num_classes - 1}")
    counts = np.bincount(reference * num_classes + prediction, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), 0.0)


def _mean(values: np.ndarray, present: np.ndarray, classes: list[int]) -> float:
    chosen = [values[i] for i in classes if present[i]]
    return float(np.mean(chosen)) if chosen else math.nan


def scores(cm: np.ndarray, class_names: list[str], mean_classes: list[int]) -> dict:
    """ISPRS scores of a confusion matrix (see the module docstring); fractions in [0, 1]."""
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix {cm.shape} does not fit {len(class_names)} class names")
    total = int(cm.sum())
    true_positive = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1).astype(np.float64), cm.sum(axis=0).astype(np.float64)
    present = (support + predicted) > 0
    precision, recall = _ratio(true_positive, predicted), _ratio(true_positive, support)
    f1 = _ratio(2 * true_positive, support + predicted)
    iou = _ratio(true_positive, support + predicted - true_positive)
    for values in (precision, recall, f1, iou):
        values[~present] = math.nan
    overall = float(true_positive.sum() / total) if total else math.nan
    expected = float((support * predicted).sum() / total ** 2) if total else math.nan
    if not total:
        kappa = math.nan
    elif expected >= 1.0:  # one class everywhere, in both: perfect agreement
        kappa = 1.0 if overall == 1.0 else 0.0
    else:
        kappa = (overall - expected) / (1.0 - expected)
    every_class = list(range(len(class_names)))
    return {
        "overall_accuracy": overall,
        "miou": _mean(iou, present, mean_classes),
        "mf1": _mean(f1, present, mean_classes),
        "miou_all": _mean(iou, present, every_class),
        "mf1_all": _mean(f1, present, every_class),
        "kappa": float(kappa),
        "pixels": total,
        "mean_classes": [class_names[i] for i in mean_classes],
        "per_class": {
            name: {"f1": float(f1[i]), "iou": float(iou[i]), "precision": float(precision[i]),
                   "recall": float(recall[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
    }


def _disc_offsets(radius: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
            if (dy, dx) != (0, 0) and dy * dy + dx * dx <= radius * radius]


def erode_boundaries(reference: np.ndarray, radius: int = 3, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The reference with ``ignore_index`` on every pixel within a ``radius`` disc of another class (noBoundary).

    Pixels next to ``ignore_index`` (nodata) are not borders; pixels outside the
    array are not either, so tiles must be read with a ``radius`` margin to
    match the whole-image result.
    """
    reference = np.asarray(reference)
    if radius <= 0:
        return reference.copy()
    h, w = reference.shape
    padded = np.pad(reference, radius, mode="constant", constant_values=ignore_index)
    border = np.zeros((h, w), dtype=bool)
    for dy, dx in _disc_offsets(radius):
        neighbour = padded[radius + dy: radius + dy + h, radius + dx: radius + dx + w]
        border |= (neighbour != reference) & (neighbour != ignore_index)
    eroded = reference.copy()
    eroded[border] = ignore_index
    return eroded
