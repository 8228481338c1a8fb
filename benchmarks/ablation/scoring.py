"""Scores of one model file on the held-out scenes, under every input condition a user can meet.

Each condition is read the way `mobanet segment` reads it (`open_scene`):
``both``; ``dsm_absent`` (no DSM file); ``optical_absent`` (the optical
image marked missing with the same `hide`); ``dsm_gaps`` (the gappy DSM with
``dsm_gaps="predict"``, scored over the whole scene) and ``in_gaps`` (the
same prediction scored only where the DSM has no data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mobanet.classes import IGNORE_INDEX
from mobanet.labels import read_labels
from mobanet.metrics import confusion_matrix, scores
from mobanet.modelfile import load_model
from mobanet.raster import open_scene, predict_array
from mobanet.train.validation import summary_scores

from .data import TestScene

CONDITIONS = ("both", "dsm_absent", "optical_absent", "dsm_gaps", "in_gaps")


def score_model(path: Path, weights: Path, test: list[TestScene], batch_size: int = 8) -> dict[str, dict]:
    model, card = load_model(path, weights=weights)
    count = card.num_classes
    matrices = {condition: np.zeros((count, count), np.int64) for condition in CONDITIONS}

    def predict(scene) -> np.ndarray:
        classes, _ = predict_array(model, card, scene, device="cpu", batch_size=batch_size)
        scene.close()
        return classes

    for item in test:
        files = item.files
        reference = open_scene(files.optical, files.dsm, card)
        labels = read_labels(files.labels, reference, card.class_names, card.class_colors)
        matrices["optical_absent"] += confusion_matrix(predict(reference.hiding("optical")), labels, count)
        matrices["both"] += confusion_matrix(predict(reference), labels, count)
        matrices["dsm_absent"] += confusion_matrix(predict(open_scene(files.optical, None, card)), labels, count)
        gappy = predict(open_scene(files.optical, item.gappy_dsm, card, dsm_gaps="predict"))
        matrices["dsm_gaps"] += confusion_matrix(gappy, labels, count)
        matrices["in_gaps"] += confusion_matrix(gappy, np.where(item.gaps, labels, IGNORE_INDEX), count)
    return {condition: summary_scores(scores(matrix, card.class_names, card.mean_class_indices()))
            for condition, matrix in matrices.items()}
