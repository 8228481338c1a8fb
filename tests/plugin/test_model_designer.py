"""A model-designer model (.model3) chaining mobanet:segment into mobanet:evaluate runs through processing.run."""

from pathlib import Path

from osgeo import gdal

MODEL3 = Path(__file__).resolve().parent / "data" / "segment_evaluate.model3"


def test_model3_chains_segment_and_evaluate(mobanet_provider, scene, model_file, tmp_path):
    import processing
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL3))
    assert sorted(c.algorithmId() for c in model.childAlgorithms().values()) == ["mobanet:evaluate",
                                                                                 "mobanet:segment"]
    for child_id in model.childAlgorithms():
        ok, errors = model.validateChildAlgorithm(child_id)
        assert ok, errors

    classes = tmp_path / "classes.tif"
    report = tmp_path / "report.html"
    results = processing.run(model, {
        "optical": str(scene["optical"]), "dsm": str(scene["dsm"]), "reference": str(scene["labels"]),
        "model": str(model_file),
        "mobanet_segment:Land cover": str(classes), "mobanet_evaluate:Accuracy report": str(report)})

    assert results["mobanet_segment:Land cover"] == str(classes)
    dataset = gdal.Open(str(classes))
    assert dataset.GetRasterBand(1).GetColorTable() is not None
    assert "<html" in report.read_text().lower()
    scores = results["CHILD_RESULTS"]["mobanet_evaluate"]
    for name in ("OA", "MF1", "MIOU"):
        assert 0.0 <= scores[name] <= 1.0
