"""`mobanet:segment` through processing.run: styled output on the optical grid, exports, cancel, engine errors."""

import os
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

ISPRS_COLORS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)]


def _grid(path):
    dataset = gdal.Open(str(path))
    return dataset.RasterXSize, dataset.RasterYSize, dataset.GetGeoTransform(), dataset.GetProjection()


def _classes(path):
    dataset = gdal.Open(str(path))  # keep the dataset alive while its band is read
    return dataset.GetRasterBand(1).ReadAsArray()


@pytest.fixture(scope="module")
def segmented(mobanet_provider, scene, model_file, tmp_path_factory, recording_feedback, qgis_iface):
    """One run, loaded into the project as the toolbox does; the tests below look at it from several sides.

    QGIS 3.44 adds loaded results through ``iface.layerTreeView()``, which pytest-qgis's stand-in iface
    does not have: it gets a real layer tree view of the project for this run.
    """
    import processing
    from qgis.core import QgsLayerTreeModel, QgsProcessingContext, QgsProject
    from qgis.gui import QgsLayerTreeView

    QgsProject.instance().clear()
    tree_view = QgsLayerTreeView()
    tree_view.setModel(QgsLayerTreeModel(QgsProject.instance().layerTreeRoot(), tree_view))
    qgis_iface.layerTreeView = lambda: tree_view
    output = tmp_path_factory.mktemp("segment") / "classes.tif"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = recording_feedback()
    try:
        results = processing.runAndLoadResults("mobanet:segment", {
            "OPTICAL": str(scene["optical"]), "DSM": str(scene["dsm"]), "MODEL": str(model_file),
            "OUTPUT": str(output)}, context=context, feedback=feedback)
    finally:
        del qgis_iface.layerTreeView
    yield results, output, feedback
    tree_view.deleteLater()


def test_output_is_on_the_optical_grid_with_palette_and_names(segmented, scene, model_file, model_card_of):
    results, output, _ = segmented
    assert Path(results["OUTPUT"]) == output
    assert _grid(output) == _grid(scene["optical"])
    dataset = gdal.Open(str(output))
    band = dataset.GetRasterBand(1)
    assert dataset.RasterCount == 1 and band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 255
    card = model_card_of(model_file)
    table = band.GetColorTable()
    assert [table.GetColorEntry(i)[:3] for i in range(card.num_classes)] == [tuple(c) for c in card.class_colors]
    assert band.GetCategoryNames()[:card.num_classes] == card.class_names
    values = np.unique(_classes(output))
    assert set(values.tolist()) <= set(range(card.num_classes)) | {255}
    assert output.with_suffix(".qml").is_file()


def test_loaded_layer_is_styled_with_the_engines_qml(segmented, model_file, model_card_of):
    from qgis.core import QgsProject

    _, output, _ = segmented
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values()
              if Path(lyr.source()).resolve() == output.resolve()]
    assert len(layers) == 1
    renderer = layers[0].renderer()
    assert renderer.type() == "paletted"
    card = model_card_of(model_file)
    classes = {c.value: (c.label, c.color.getRgb()[:3]) for c in renderer.classes()}
    for index, (name, color) in enumerate(zip(card.class_names, card.class_colors, strict=True)):
        assert classes[index] == (name, tuple(color))


def test_progress_and_class_shares_reach_the_feedback(segmented):
    _, _, feedback = segmented
    assert feedback.progress() == 100.0
    assert feedback.progress_texts, "no progress event was relayed"
    assert any(line.startswith("Class shares: ") for line in feedback.infos)
    assert feedback.engine_pid() is not None


def test_without_a_dsm_the_log_says_what_that_costs(mobanet_provider, scene, model_file, tmp_path,
                                                   recording_feedback, model_card_of):
    """DSM left empty: every optical pixel is classified and the log carries the model card's cost sentence
    (the card read without torch: under `make test-ltr` the test runner has none)."""
    import processing

    output = tmp_path / "no_dsm.tif"
    feedback = recording_feedback()
    results = processing.run("mobanet:segment", {"OPTICAL": str(scene["optical"]), "MODEL": str(model_file),
                                                 "OUTPUT": str(output)}, feedback=feedback)
    assert Path(results["OUTPUT"]) == output and _grid(output) == _grid(scene["optical"])
    assert (_classes(output) < 255).all()
    scores = model_card_of(model_file).modality_scores
    said = [line for line in feedback.warnings if line.startswith("No DSM given")]
    assert not any(line.startswith("No DSM given") for line in feedback.infos)  # once, as a warning
    assert len(said) == 1 and (f"{model_file} scores mIoU {scores['dsm_absent']['miou']:.3f} without a DSM against "
                               f"{scores['both']['miou']:.3f} with one") in said[0]


def test_dsm_gaps_left_as_nodata(mobanet_provider, scene, model_file, tmp_path):
    """A DSM that covers only the left half: with DSM_GAPS = nodata the right half stays 255."""
    import processing

    half = tmp_path / "half_dsm.tif"
    source = gdal.Open(str(scene["dsm"]))
    gdal.Translate(str(half), source, srcWin=[0, 0, source.RasterXSize // 2, source.RasterYSize])
    output = tmp_path / "gaps.tif"
    processing.run("mobanet:segment", {"OPTICAL": str(scene["optical"]), "DSM": str(half), "DSM_GAPS": 1,
                                       "MODEL": str(model_file), "OUTPUT": str(output)})
    classes = _classes(output)
    width = classes.shape[1] // 2
    assert (classes[:, width + 1:] == 255).all() and (classes[:, :width - 1] < 255).all()


def test_layer_without_a_file_is_exported_to_a_geotiff_first(mobanet_provider, scene, tmp_path,
                                                              recording_feedback):
    """A DSM from the virtual raster provider (raster calculator on the fly) reaches the engine as a GeoTIFF
    with the same grid and values; a plain GeoTIFF layer is passed through as its own file."""
    from qgis.core import QgsProcessingContext, QgsRasterDataProvider, QgsRasterLayer

    from mobanet_qgis.algorithms.base import raster_layer_file

    dsm = QgsRasterLayer(str(scene["dsm"]), "dsm")
    params = QgsRasterDataProvider.VirtualRasterParameters()
    params.crs, params.extent = dsm.crs(), dsm.extent()
    params.width, params.height = dsm.width(), dsm.height()
    params.formula = '"dsm@1"'
    source = QgsRasterDataProvider.VirtualRasterInputLayers()
    source.name, source.uri, source.provider = "dsm", str(scene["dsm"]), "gdal"
    params.rInputLayers = [source]
    virtual = QgsRasterLayer(QgsRasterDataProvider.encodeVirtualRasterProviderUri(params), "dsm", "virtualraster")
    assert virtual.isValid() and virtual.providerType() == "virtualraster"

    context, feedback = QgsProcessingContext(), recording_feedback()
    assert raster_layer_file(dsm, "DSM", context, feedback) == str(scene["dsm"])
    exported = raster_layer_file(virtual, "DSM", context, feedback)
    assert exported != str(scene["dsm"]) and exported.endswith(".tif")
    assert any("temporary GeoTIFF" in line for line in feedback.infos)
    assert _grid(exported)[:2] == _grid(scene["dsm"])[:2]
    assert _grid(exported)[2] == pytest.approx(_grid(scene["dsm"])[2], abs=1e-9)
    np.testing.assert_allclose(_classes(exported), _classes(scene["dsm"]))


def test_options_mask_confidence_and_polygons(mobanet_provider, scene, model_file, tmp_path):
    """A mask drawn in a memory layer (left half), bands, CPU, and the two optional outputs."""
    import processing
    from qgis.core import QgsFeature, QgsGeometry, QgsRectangle, QgsVectorLayer

    width, height, (x0, dx, _, y0, _, dy), _ = _grid(scene["optical"])
    mask = QgsVectorLayer("Polygon?crs=EPSG:32632", "mask", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(x0, y0 + height * dy, x0 + (width // 2) * dx, y0)))
    assert mask.dataProvider().addFeatures([feature])[0]

    paths = {name: tmp_path / f"{name.lower()}{ext}" for name, ext in
             (("OUTPUT", ".tif"), ("CONFIDENCE", ".tif"), ("VECTOR", ".gpkg"))}
    results = processing.run("mobanet:segment", {
        "OPTICAL": str(scene["optical"]), "DSM": str(scene["dsm"]), "MODEL": str(model_file), "BANDS": [1, 2, 3],
        "MASK": mask, "DEVICE": 1, "BATCH_SIZE": 2, "OVERLAP": 0.25, **{k: str(v) for k, v in paths.items()}})

    assert {k: Path(v) for k, v in results.items()} == paths
    classes = _classes(paths["OUTPUT"])
    assert np.all(classes[:, width // 2 + 1:] == 255) and np.any(classes[:, :width // 2] != 255)
    confidence = _classes(paths["CONFIDENCE"])
    assert confidence.dtype == np.float32 and _grid(paths["CONFIDENCE"]) == _grid(scene["optical"])
    inside = classes != 255
    assert np.all((confidence[inside] > 0) & (confidence[inside] <= 1))
    polygons = ogr.Open(str(paths["VECTOR"]))
    assert polygons.GetLayer(0).GetFeatureCount() > 0


def test_cancel_stops_the_engine_and_leaves_no_output(mobanet_provider, sample_full, model_file, tmp_path,
                                                      recording_feedback):
    import processing
    from qgis.core import QgsProcessingException

    out_dir = tmp_path / "cancelled"
    out_dir.mkdir()
    feedback = recording_feedback(cancel_on_progress=True)
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run("mobanet:segment", {
            "OPTICAL": str(sample_full["optical"]), "DSM": str(sample_full["dsm"]), "MODEL": str(model_file),
            "BATCH_SIZE": 1, "OVERLAP": 0.75, "OUTPUT": str(out_dir / "classes.tif"),
            "CONFIDENCE": str(out_dir / "confidence.tif")}, feedback=feedback)
    pid = feedback.engine_pid()
    assert pid is not None and feedback.isCanceled()
    with pytest.raises(ProcessLookupError):  # ended and reaped, not left running
        os.kill(pid, 0)
    assert sorted(os.listdir(out_dir)) == []


def test_bad_input_surfaces_the_engines_message(mobanet_provider, scene, tmp_path):
    """A corrupt model file: the engine's own message (it names the file), not a traceback or exit code."""
    import processing
    from qgis.core import QgsProcessingException

    bad_model = tmp_path / "not_a_model.safetensors"
    bad_model.write_text("this is not a safetensors file\n")
    output = tmp_path / "classes.tif"
    with pytest.raises(QgsProcessingException) as raised:
        processing.run("mobanet:segment", {"OPTICAL": str(scene["optical"]), "DSM": str(scene["dsm"]),
                                           "MODEL": str(bad_model), "OUTPUT": str(output)})
    message = str(raised.value)
    assert str(bad_model) in message  # only the engine knows about the file's content
    assert "Traceback" not in message and "exit code" not in message
    assert not output.exists()


def test_context_margin_reaches_the_engine_and_excludes_window_overlap(mobanet_provider, scene, model_file,
                                                                         tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    base = {"OPTICAL": str(scene["optical"]), "DSM": str(scene["dsm"]), "MODEL": str(model_file), "DEVICE": 1}
    results = processing.run("mobanet:segment", {**base, "MARGIN": 14, "OUTPUT": str(tmp_path / "margin.tif")})
    classes = _classes(results["OUTPUT"])
    assert _grid(results["OUTPUT"]) == _grid(scene["optical"]) and (classes < 6).all()
    wide = r"the 'Context margin \(pixels\)' field 200 px leaves nothing"  # the engine's check, in field words
    with pytest.raises(QgsProcessingException, match=wide):
        processing.run("mobanet:segment", {**base, "MARGIN": 200, "OUTPUT": str(tmp_path / "wide.tif")})
    with pytest.raises(QgsProcessingException, match="set only one of them"):
        processing.run("mobanet:segment", {**base, "MARGIN": 14, "OVERLAP": 0.25,
                                           "OUTPUT": str(tmp_path / "both.tif")})
    assert not list(tmp_path.glob("wide*")) and not list(tmp_path.glob("both*"))
