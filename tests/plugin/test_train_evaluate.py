"""`mobanet:train` and `mobanet:evaluate` through processing.run."""

import json

import numpy as np
import pytest
from osgeo import gdal


def _write_like(path, template, array):
    """A GeoTIFF with the template's grid and CRS holding `array` (uint8, nodata 255)."""
    source = gdal.Open(str(template))
    target = gdal.GetDriverByName("GTiff").Create(str(path), source.RasterXSize, source.RasterYSize, 1, gdal.GDT_Byte)
    target.SetGeoTransform(source.GetGeoTransform())
    target.SetProjection(source.GetProjection())
    band = target.GetRasterBand(1)
    band.SetNoDataValue(255)
    band.WriteArray(array)
    target = None
    return path


def _read(path):
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).ReadAsArray()


def test_evaluate_scores_a_known_disagreement(mobanet_provider, scene, tmp_path, recording_feedback):
    """Reference vs. itself with one block relabelled: OA is the unchanged share, computed here independently."""
    import processing

    reference = _read(scene["labels"])
    prediction = reference.copy()
    block = (slice(10, 60), slice(20, 90))
    prediction[block] = np.where(prediction[block] == 1, 3, 1)  # every pixel of the block is now wrong
    valid = reference != 255
    expected_oa = float(np.sum((prediction == reference) & valid) / np.sum(valid))
    predicted = _write_like(tmp_path / "prediction.tif", scene["labels"], prediction)

    feedback = recording_feedback()
    results = processing.run("mobanet:evaluate", {
        "PREDICTION": str(predicted), "REFERENCE": str(scene["labels"]),
        "OUTPUT_HTML": str(tmp_path / "report.html"), "OUTPUT_JSON": str(tmp_path / "scores.json")},
        feedback=feedback)

    assert results["OA"] == pytest.approx(expected_oa, abs=1e-6)
    assert 0.0 < results["MIOU"] < 1.0 and 0.0 < results["MF1"] < 1.0 and results["MIOU"] <= results["MF1"]
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["overall_accuracy"] == pytest.approx(results["OA"])
    assert scores["miou"] == pytest.approx(results["MIOU"]) and scores["mf1"] == pytest.approx(results["MF1"])
    assert "<html" in (tmp_path / "report.html").read_text().lower()
    assert any(line.startswith("Overall accuracy: ") for line in feedback.infos)


def test_train_writes_a_model_and_logs_metrics_per_epoch(mobanet_provider, scene, tmp_path, recording_feedback,
                                                         model_card_of):
    import processing

    from mobanet_qgis.algorithms.train import BACKBONES

    output = tmp_path / "mine.safetensors"
    feedback = recording_feedback()
    results = processing.run("mobanet:train", {
        "OPTICAL": [str(scene["optical"])], "DSM": [str(scene["dsm"])], "LABELS": [str(scene["labels"])],
        "BACKBONE": BACKBONES.index("tiny"),
        "EPOCHS": 2, "ITERATIONS": 3, "BATCH_SIZE": 2, "WINDOW": 112, "DEVICE": 1, "SEED": 3,
        "OUTPUT": str(output)}, feedback=feedback)

    assert results["OUTPUT"] == str(output) and output.is_file()
    assert results["OUTPUT_LAST"] == str(tmp_path / "mine.last.safetensors")
    card = model_card_of(output)
    assert card.backbone == "tiny"
    for epoch in (1, 2):
        assert any(line.startswith("Metrics: ") and f"epoch={epoch}" in line for line in feedback.infos)
    assert feedback.progress() == 100.0


def test_train_progress_counts_the_whole_run_and_ends_after_the_last_validation(
        mobanet_provider, scene, tmp_path, recording_feedback):
    """The bar moves with iterations and validated windows, never goes back, and is full only at the end."""
    import processing

    from mobanet_qgis.algorithms.train import BACKBONES

    feedback = recording_feedback()
    processing.run("mobanet:train", {
        "OPTICAL": [str(scene["optical"])], "DSM": [str(scene["dsm"])], "LABELS": [str(scene["labels"])],
        "BACKBONE": BACKBONES.index("tiny"), "EPOCHS": 2, "ITERATIONS": 4, "BATCH_SIZE": 2, "WINDOW": 56,
        "DEVICE": 1, "OUTPUT": str(tmp_path / "m.safetensors")}, feedback=feedback)

    values = [value for kind, value in feedback.timeline if kind == "progress"]
    assert values == sorted(values), "the progress went back"
    # each epoch's start and each validation's end are reported whatever the machine's speed (the steps between
    # only when 0.2 s apart): at least four distinct values before the final 100
    assert values[-1] == 100.0 and len(set(values)) >= 5
    texts = [text for kind, text in feedback.timeline if kind == "text"]
    assert texts[:2] == ["Epoch 1/2", "Validating epoch 1/2"] and "Validating epoch 2/2" in texts
    last_validation = max(i for i, (kind, text) in enumerate(feedback.timeline) if text == "Validating epoch 2/2")
    during = [value for kind, value in feedback.timeline[:last_validation + 1] if kind == "progress"]
    assert max(during) < 100.0
    second_epoch = feedback.timeline.index(("text", "Epoch 2/2"))
    halfway = [value for kind, value in feedback.timeline[:second_epoch] if kind == "progress"]
    assert 20.0 < max(halfway) < 80.0, "one epoch of two is not about half of the run"


def test_train_refuses_lists_of_different_lengths(mobanet_provider, scene, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="same number of layers"):
        processing.run("mobanet:train", {
            "OPTICAL": [str(scene["optical"]), str(scene["optical"])], "DSM": [str(scene["dsm"])],
            "LABELS": [str(scene["labels"])], "BACKBONE": 8, "OUTPUT": str(tmp_path / "m.safetensors")})


def test_polygon_labels_in_memory_are_exported_to_a_geopackage(mobanet_provider, tmp_path, recording_feedback):
    """Label polygons drawn in a memory layer reach the engine as a GeoPackage file with the same features."""
    from osgeo import ogr
    from qgis.core import QgsFeature, QgsGeometry, QgsProcessingContext, QgsVectorLayer

    from mobanet_qgis.algorithms.base import layer_file

    memory = QgsVectorLayer("Polygon?crs=EPSG:32632&field=class:integer", "labels", "memory")
    features = []
    for index, wkt in enumerate(["POLYGON((496000 5420990, 496005 5420990, 496005 5420995, 496000 5420995, "
                                 "496000 5420990))", "POLYGON((496006 5420990, 496010 5420990, 496010 5420994, "
                                 "496006 5420990))"]):
        feature = QgsFeature(memory.fields())
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        feature.setAttribute("class", index + 1)
        features.append(feature)
    assert memory.dataProvider().addFeatures(features)[0]

    exported = layer_file(memory, "LABELS_1", QgsProcessingContext(), recording_feedback())
    assert exported.endswith(".gpkg")
    dataset = ogr.Open(exported)
    layer = dataset.GetLayer(0)
    assert dataset.GetLayerCount() == 1 and layer.GetFeatureCount() == 2
    assert sorted(f.GetField("class") for f in layer) == [1, 2]
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "32632"

    on_disk = QgsVectorLayer(exported, "labels")
    assert layer_file(on_disk, "LABELS_1", QgsProcessingContext(), recording_feedback()) == exported
