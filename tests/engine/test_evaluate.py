"""`mobanet evaluate`: hand-made rasters with a known confusion, grids, colour references, erosion, CLI files."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from osgeo import gdal, osr

from mobanet import evaluate as evaluate_module
from mobanet.classes import ISPRS_CLASSES
from mobanet.commands import evaluate as evaluate_command
from mobanet.errors import InputError
from mobanet.evaluate import evaluate, format_report
from mobanet.metrics import confusion_matrix, erode_boundaries
from mobanet.progress import Progress

gdal.UseExceptions()

NAMES = [c.name for c in ISPRS_CLASSES]
COLOURS = [c.color for c in ISPRS_CLASSES]


def write(path, bands: np.ndarray, origin=(496_000.0, 5_421_000.0), epsg=32632, names=None):
    bands = bands if bands.ndim == 3 else bands[None]
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), bands.shape[2], bands.shape[1], bands.shape[0],
                                                   gdal.GDT_Byte)
    dataset.SetGeoTransform((origin[0], 0.1, 0, origin[1], 0, -0.1))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    dataset.SetProjection(srs.ExportToWkt())
    for i, values in enumerate(bands, start=1):
        dataset.GetRasterBand(i).WriteArray(values)
    if names is not None:
        dataset.GetRasterBand(1).SetNoDataValue(255)
        dataset.GetRasterBand(1).SetCategoryNames(names)
    dataset = None
    return path


def stripes(height=40, width=60) -> np.ndarray:
    """Reference: six vertical stripes of 10 columns, classes 0..5."""
    return np.repeat(np.arange(6, dtype=np.uint8), 10)[None].repeat(height, axis=0)[:, :width]


@pytest.fixture
def rasters(tmp_path):
    reference = stripes()
    prediction = reference.copy()
    prediction[:10, 10:20] = 0  # 100 building pixels called impervious
    prediction[:, 30:32] = 2  # 80 tree pixels called low vegetation
    prediction[0, :] = 255  # no prediction on the first row
    return (write(tmp_path / "prediction.tif", prediction, names=NAMES), write(tmp_path / "reference.tif", reference),
            prediction, reference)


def test_known_confusion(rasters):
    prediction_path, reference_path, prediction, reference = rasters
    metrics = evaluate(prediction_path, reference_path)
    cm = np.array(metrics["confusion_matrix"])
    assert cm.sum() == 39 * 60
    assert cm[1, 0] == 90 and cm[3, 2] == 78
    np.testing.assert_array_equal(cm, confusion_matrix(prediction, reference, 6))
    assert metrics["overall_accuracy"] == pytest.approx((39 * 60 - 168) / (39 * 60))
    assert metrics["per_class"]["building"]["recall"] == pytest.approx(300 / 390)
    assert metrics["class_names"] == NAMES and "clutter" not in metrics["mean_classes"]
    assert metrics["eroded"] is False


def test_colour_coded_reference_gives_the_same_scores(rasters, tmp_path):
    prediction_path, reference_path, _, reference = rasters
    rgb = np.array(COLOURS, np.uint8)[reference].transpose(2, 0, 1)
    colour_path = write(tmp_path / "reference_rgb.tif", rgb)
    by_colour = evaluate(prediction_path, colour_path)
    by_index = evaluate(prediction_path, reference_path)
    assert by_colour["confusion_matrix"] == by_index["confusion_matrix"]


def test_mismatched_grids_name_both_files(rasters, tmp_path):
    prediction_path, _, _, reference = rasters
    moved = write(tmp_path / "moved.tif", reference, origin=(496_000.5, 5_421_000.0))
    with pytest.raises(InputError, match=r"prediction\.tif.*moved\.tif"):
        evaluate(prediction_path, moved)
    smaller = write(tmp_path / "smaller.tif", reference[:30])
    with pytest.raises(InputError, match=r"smaller\.tif"):
        evaluate(prediction_path, smaller)
    other_crs = write(tmp_path / "crs.tif", reference, epsg=25832)
    with pytest.raises(InputError, match=r"EPSG:25832"):
        evaluate(prediction_path, other_crs)


def test_eroded_evaluation_ignores_border_errors(tmp_path):
    reference = stripes()
    prediction = reference.copy()
    prediction[:, 9] = 1  # wrong right at every border ...
    prediction[:, 30] = 2
    prediction_path = write(tmp_path / "p.tif", prediction, names=NAMES)
    reference_path = write(tmp_path / "r.tif", reference)
    assert evaluate(prediction_path, reference_path)["overall_accuracy"] < 1.0
    eroded = evaluate(prediction_path, reference_path, eroded=True, radius=3)
    assert eroded["overall_accuracy"] == 1.0  # ... so eroding the borders removes every error
    assert eroded["pixels"] == 40 * (60 - 5 * 6)
    assert eroded["erosion_radius"] == 3


def test_strips_give_the_whole_image_result(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    reference = np.kron(rng.integers(0, 6, (9, 8)), np.ones((7, 7), np.int64)).astype(np.uint8)
    prediction = np.where(rng.random(reference.shape) < 0.8, reference, rng.integers(0, 6, reference.shape))
    prediction = prediction.astype(np.uint8)
    prediction_path = write(tmp_path / "p.tif", prediction, names=NAMES)
    reference_path = write(tmp_path / "r.tif", reference)
    monkeypatch.setattr(evaluate_module, "STRIP_ROWS", 5)
    metrics = evaluate(prediction_path, reference_path, eroded=True, radius=2)
    expected = confusion_matrix(prediction, erode_boundaries(reference, 2), 6)
    np.testing.assert_array_equal(np.array(metrics["confusion_matrix"]), expected)


def test_unknown_prediction_values_are_an_input_error(tmp_path):
    reference = stripes()
    prediction = reference.copy()
    prediction[5, 5] = 17
    with pytest.raises(InputError, match=r"Prediction .*p\.tif hold values 17"):
        evaluate(write(tmp_path / "p.tif", prediction, names=NAMES), write(tmp_path / "r.tif", reference))


def test_class_names_come_from_the_prediction(tmp_path):
    labels = np.zeros((20, 20), np.uint8)
    labels[:, 10:] = 1
    prediction = write(tmp_path / "p.tif", labels, names=["ground", "roof"])
    metrics = evaluate(prediction, write(tmp_path / "r.tif", labels))
    assert metrics["class_names"] == ["ground", "roof"] and metrics["miou"] == 1.0
    overridden = evaluate(prediction, tmp_path / "r.tif", class_names=["soil", "house", "water"])
    assert overridden["class_names"] == ["soil", "house", "water"]
    assert overridden["per_class"]["water"]["iou"] != overridden["per_class"]["water"]["iou"]  # NaN: absent


def test_cli_writes_json_and_reports(rasters, tmp_path, capsys):
    prediction_path, reference_path, _, _ = rasters
    parser = argparse.ArgumentParser()
    evaluate_command.register(parser.add_subparsers(), parents=[])
    args = parser.parse_args(["evaluate", "--prediction", str(prediction_path), "--reference", str(reference_path),
                              "--json", str(tmp_path / "m.json"), "--report", str(tmp_path / "m.md")])
    result = args.run(args, Progress("quiet"))
    data = json.loads((tmp_path / "m.json").read_text())
    for key in ("overall_accuracy", "miou", "mf1", "miou_all", "mf1_all", "kappa", "per_class", "confusion_matrix",
                "class_names"):
        assert key in data
    assert all(0 <= data[k] <= 1 for k in ("overall_accuracy", "miou", "mf1", "miou_all", "kappa"))
    assert data["miou"] == pytest.approx(result["miou"])
    assert set(data["per_class"]["car"]) == {"f1", "iou", "precision", "recall", "support"}
    report = (tmp_path / "m.md").read_text()
    assert "| building |" in report and "Confusion matrix" in report
    assert capsys.readouterr().out == ""  # quiet: nothing on stdout
    args = parser.parse_args(["evaluate", "--prediction", str(prediction_path), "--reference", str(reference_path),
                              "--report", str(tmp_path / "m.html"), "--eroded"])
    args.run(args, Progress("tqdm"))
    assert "overall accuracy" in capsys.readouterr().out
    assert (tmp_path / "m.html").read_text().startswith("<!DOCTYPE html>")
    bad = parser.parse_args(["evaluate", "--prediction", str(prediction_path), "--reference", str(reference_path),
                             "--report", str(tmp_path / "m.txt")])
    with pytest.raises(InputError, match=r"--report .*m\.txt has an extension .* ending in \.md, .*\.html"):
        bad.run(bad, Progress("quiet"))


def test_nan_scores_become_null_in_json(tmp_path):
    labels = np.zeros((10, 10), np.uint8)
    labels[:, 5:] = 1
    prediction = write(tmp_path / "p.tif", labels, names=NAMES)
    evaluate(prediction, write(tmp_path / "r.tif", labels), json_path=tmp_path / "m.json")
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["per_class"]["car"]["iou"] is None and data["miou"] == 1.0


def test_report_formats():
    metrics = evaluate_module.scores(np.array([[3, 1], [0, 4]]), ["x", "clutter"], [0])
    metrics.update(prediction="p.tif", reference="r.tif", eroded=False, erosion_radius=0)
    markdown = format_report(metrics, "md")
    assert "| x | 85.71 | 75.00 | 100.00 | 75.00 | 4 |" in markdown
    assert "<td>x</td>" in format_report(metrics, "html")
    with pytest.raises(ValueError):
        format_report(metrics, "pdf")
