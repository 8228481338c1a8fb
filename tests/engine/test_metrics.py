"""Confusion matrix, ISPRS scores and eroded references, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mobanet.metrics import confusion_matrix, erode_boundaries, scores


def test_confusion_matrix_rows_are_reference_and_ignore_is_skipped():
    prediction = np.array([[0, 1, 1], [2, 255, 0]], np.uint8)
    reference = np.array([[0, 1, 2], [2, 1, 255]], np.uint8)
    cm = confusion_matrix(prediction, reference, 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 0], [0, 1, 1]])


def test_confusion_matrix_sums_over_tiles():
    rng = np.random.default_rng(0)
    prediction, reference = rng.integers(0, 4, (2, 50, 60))
    whole = confusion_matrix(prediction, reference, 4)
    halves = confusion_matrix(prediction[:25], reference[:25], 4) + confusion_matrix(prediction[25:],
                                                                                    reference[25:], 4)
    np.testing.assert_array_equal(whole, halves)
    assert whole.sum() == 3000
    assert np.trace(whole) == (prediction == reference).sum()


def test_confusion_matrix_rejects_values_outside_the_classes():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


HAND_CM = np.array([[5, 1, 0, 0],
                    [2, 3, 0, 0],
                    [0, 0, 0, 0],
                    [0, 1, 0, 2]])
NAMES = ["a", "b", "c", "clutter"]


def test_scores_match_hand_computation():
    result = scores(HAND_CM, NAMES, mean_classes=[0, 1, 2])
    assert result["overall_accuracy"] == pytest.approx(10 / 14)
    a, b, c, clutter = (result["per_class"][n] for n in NAMES)
    assert (a["precision"], a["recall"], a["f1"], a["iou"]) == pytest.approx((5 / 7, 5 / 6, 10 / 13, 5 / 8))
    assert (b["precision"], b["recall"], b["f1"], b["iou"]) == pytest.approx((3 / 5, 3 / 5, 3 / 5, 3 / 7))
    assert (clutter["f1"], clutter["iou"], clutter["support"]) == pytest.approx((4 / 5, 2 / 3, 3))
    assert all(math.isnan(c[k]) for k in ("f1", "iou", "precision", "recall")) and c["support"] == 0
    assert result["miou"] == pytest.approx((5 / 8 + 3 / 7) / 2)  # c is absent: left out of the mean
    assert result["mf1"] == pytest.approx((10 / 13 + 3 / 5) / 2)
    assert result["miou_all"] == pytest.approx((5 / 8 + 3 / 7 + 2 / 3) / 3)
    assert result["mf1_all"] == pytest.approx((10 / 13 + 3 / 5 + 4 / 5) / 3)
    assert result["kappa"] == pytest.approx(67 / 123)
    assert result["confusion_matrix"] == HAND_CM.tolist()
    assert result["class_names"] == NAMES and result["mean_classes"] == ["a", "b", "c"]
    assert result["pixels"] == 14


def test_a_class_only_predicted_scores_zero_not_nan():
    result = scores(np.array([[1, 1], [0, 0]]), ["x", "y"], [0, 1])
    y = result["per_class"]["y"]
    assert (y["precision"], y["recall"], y["f1"], y["iou"]) == (0.0, 0.0, 0.0, 0.0)
    assert result["miou"] == pytest.approx((0.5 + 0.0) / 2)


def test_perfect_single_class_agreement_has_kappa_one():
    result = scores(np.array([[7, 0], [0, 0]]), ["x", "y"], [0, 1])
    assert result["kappa"] == 1.0 and result["overall_accuracy"] == 1.0
    assert math.isnan(result["per_class"]["y"]["iou"]) and result["miou"] == 1.0


def test_scores_of_an_empty_matrix_are_nan():
    result = scores(np.zeros((2, 2), np.int64), ["x", "y"], [0, 1])
    assert math.isnan(result["overall_accuracy"]) and math.isnan(result["miou"]) and math.isnan(result["kappa"])


def test_erosion_ignores_a_disc_around_class_borders():
    reference = np.zeros((9, 10), np.uint8)
    reference[:, 5:] = 1
    eroded = erode_boundaries(reference, radius=3)
    ignored = np.nonzero((eroded == 255).all(axis=0))[0]
    np.testing.assert_array_equal(ignored, [2, 3, 4, 5, 6, 7])  # 3 px each side of the border
    assert (eroded[:, :2] == 0).all() and (eroded[:, 8:] == 1).all()
    np.testing.assert_array_equal(np.nonzero((erode_boundaries(reference, 1) == 255).all(axis=0))[0], [4, 5])


def test_erosion_uses_a_disc_not_a_square():
    reference = np.zeros((11, 11), np.uint8)
    reference[5, 5] = 1
    eroded = erode_boundaries(reference, radius=3)
    assert eroded[5, 2] == 255 and eroded[2, 5] == 255  # 3 px straight away
    assert eroded[3, 3] == 255  # sqrt(8) < 3
    assert eroded[2, 2] == 0  # sqrt(18) > 3: outside the disc
    assert (eroded == 255).sum() == 29  # the disc of radius 3 has 29 pixels


def test_nodata_and_the_array_edge_are_not_borders():
    reference = np.zeros((6, 6), np.uint8)
    reference[:, :2] = 255
    eroded = erode_boundaries(reference, radius=2)
    assert (eroded[:, 2:] == 0).all() and (eroded[:, :2] == 255).all()
