"""The dialogs as a user meets them: batch processing, loaded layers, and the layer each field starts on."""

import time
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.fixture
def dialogs(qgis_iface, monkeypatch):
    """``qgis.utils.iface`` as the Processing dialogs and result loading use it.

    pytest-qgis's stand-in lacks the browser model (dialogs) and the layer tree
    view (QGIS 3.44 loads results through it): both are real ones here.
    """
    from qgis.core import QgsLayerTreeModel, QgsProject
    from qgis.gui import QgsBrowserGuiModel, QgsLayerTreeView

    QgsProject.instance().clear()
    model, tree_view = QgsBrowserGuiModel(), QgsLayerTreeView()
    tree_view.setModel(QgsLayerTreeModel(QgsProject.instance().layerTreeRoot(), tree_view))
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: model, raising=False)
    monkeypatch.setattr(qgis_iface, "layerTreeView", lambda: tree_view, raising=False)
    yield qgis_iface
    QgsProject.instance().clear()
    tree_view.deleteLater()


def _columns(panel):
    """Batch table column of each field, by its header (the field's label)."""
    table = panel.tblParameters
    return {table.horizontalHeaderItem(c).text(): c for c in range(table.columnCount())
            if table.horizontalHeaderItem(c) is not None}


def _batch_log(dialog) -> str:
    from qgis.PyQt.QtWidgets import QTextEdit

    return "\n".join(edit.toPlainText() for edit in dialog.findChildren(QTextEdit))


def _run_batch(algorithm_id: str, rows: list[dict], timeout: float = 600.0) -> str:
    """Fill a real batch dialog row by row (inputs through their widgets, outputs as typed), run it, return its log."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from qgis.core import QgsApplication, QgsProcessingContext
    from qgis.PyQt.QtCore import QCoreApplication

    algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    dialog = BatchAlgorithmDialog(algorithm.create())
    panel = dialog.mainWidget()
    while panel.batchRowCount() < len(rows):
        panel.addRow()
    columns, context = _columns(panel), QgsProcessingContext()
    for row, values in enumerate(rows):
        for name, value in values.items():
            column = columns[algorithm.parameterDefinition(name).description()]
            if algorithm.parameterDefinition(name).isDestination():
                panel.tblParameters.cellWidget(row + 1, column).setValue(str(value))
            else:
                panel.wrappers[row][column].setParameterValue(str(value), context)
    if hasattr(panel, "checkLoadLayersOnCompletion"):
        panel.checkLoadLayersOnCompletion.setChecked(True)
    dialog.runAlgorithm()
    deadline = time.monotonic() + timeout  # newer QGIS runs batches in background tasks
    while "Batch execution completed" not in _batch_log(dialog) and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.05)
    log = _batch_log(dialog)
    dialog.close()
    return log


def _project_layers() -> dict:
    from qgis.core import QgsProject

    return {layer.name(): layer for layer in QgsProject.instance().mapLayers().values()}


@pytest.mark.slow
def test_batch_rows_load_styled_layers_named_after_their_files(mobanet_provider, dialogs, scene, model_file,
                                                               tmp_path):
    """Two rows, optional outputs left blank except one: no red 'not correctly generated', one layer per file."""
    from qgis import gui

    if hasattr(gui, "QgsProcessingBatchAlgorithmDialogBase"):
        pytest.skip("QGIS's C++ batch dialog (3.24+) driven without its window deletes its feedback before it loads "
                    "the last row's results and aborts the process, with QGIS's own algorithms too "
                    "(native:createconstantrasterlayer); this test runs on QGIS 3.22 (make test)")
    inputs = {"OPTICAL": scene["optical"], "DSM": scene["dsm"], "MODEL": model_file}
    log = _run_batch("mobanet:segment", [
        {**inputs, "OUTPUT": tmp_path / "north.tif"},
        {**inputs, "OUTPUT": tmp_path / "south.tif", "VECTOR": tmp_path / "south_polygons.gpkg"}])

    assert "Batch execution completed" in log, log[-3000:]
    assert "not correctly generated" not in log and "executions failed" not in log, log[-3000:]
    layers = _project_layers()
    assert set(layers) == {"north", "south", "south_polygons"}
    assert layers["north"].renderer().type() == layers["south"].renderer().type() == "paletted"
    assert layers["south_polygons"].renderer().type() == "categorizedSymbol"
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".aux.xml"))  # QGIS's statistics
    assert written == ["north.qml", "north.tif", "south.qml", "south.tif", "south_polygons.gpkg"]


def test_blank_optional_outputs_are_not_results_nor_layers_to_load(mobanet_provider, dialogs, scene, model_file,
                                                                   tmp_path):
    """What the batch panel passes for blank columns (empty destinations) and what Processing then loads."""
    from processing.gui.Postprocessing import handleAlgorithmResults
    from qgis.core import (
        QgsApplication,
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsProcessingOutputLayerDefinition,
        QgsProject,
    )

    project = QgsProject.instance()
    project.clear()
    parameters = {"OPTICAL": str(scene["optical"]), "DSM": str(scene["dsm"]), "MODEL": str(model_file),
                  "OUTPUT": QgsProcessingOutputLayerDefinition(str(tmp_path / "classes.tif"), project),
                  "CONFIDENCE": QgsProcessingOutputLayerDefinition("", project),
                  "VECTOR": QgsProcessingOutputLayerDefinition("", project)}
    errors = []

    class Feedback(QgsProcessingFeedback):
        def reportError(self, error, fatalError=False):
            errors.append(error)
            super().reportError(error, fatalError)

    algorithm = QgsApplication.processingRegistry().algorithmById("mobanet:segment")
    context, feedback = QgsProcessingContext(), Feedback()
    context.setProject(project)
    results, ok = algorithm.run(parameters, context, feedback)
    assert ok, errors
    assert results == {"OUTPUT": str(tmp_path / "classes.tif")}
    assert list(context.layersToLoadOnCompletion()) == [str(tmp_path / "classes.tif")]
    assert handleAlgorithmResults(algorithm, context, feedback=feedback, parameters=parameters)
    assert not errors and list(_project_layers()) == ["classes"]
    project.clear()


def test_loaded_layers_are_named_after_their_files_or_their_input(mobanet_provider, dialogs, scene, model_file,
                                                                   tmp_path):
    """A file the user named gives the layer its name; a temporary output is named after field and input."""
    import processing
    from qgis.core import QgsProcessing, QgsProcessingContext, QgsProject, QgsRasterLayer

    project = QgsProject.instance()
    project.clear()
    optical = QgsRasterLayer(str(scene["optical"]), "ortho_2024")
    project.addMapLayer(optical)
    context = QgsProcessingContext()
    context.setProject(project)
    processing.runAndLoadResults("mobanet:segment", {
        "OPTICAL": optical, "DSM": str(scene["dsm"]), "MODEL": str(model_file),
        "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT, "VECTOR": str(tmp_path / "parcels.gpkg")}, context=context)
    names = set(_project_layers())
    assert names == {"ortho_2024", "Land cover (ortho_2024)", "parcels"}
    project.clear()


def test_land_cover_polygons_open_in_the_class_colours_later_too(mobanet_provider, dialogs, scene, model_file,
                                                                  model_card_of, tmp_path):
    """Loaded by Processing and opened again as a plain layer: categorized by class with the model's colours."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsVectorLayer

    card = model_card_of(model_file)
    expected = {str(i): (name, tuple(color)) for i, (name, color) in enumerate(
        zip(card.class_names, card.class_colors, strict=True))}
    project = QgsProject.instance()
    project.clear()
    context = QgsProcessingContext()
    context.setProject(project)
    polygons = tmp_path / "polygons.gpkg"
    processing.runAndLoadResults("mobanet:segment", {
        "OPTICAL": str(scene["optical"]), "DSM": str(scene["dsm"]), "MODEL": str(model_file),
        "OUTPUT": str(tmp_path / "classes.tif"), "VECTOR": str(polygons)}, context=context)
    loaded = _project_layers()["polygons"]
    for layer in (loaded, QgsVectorLayer(str(polygons), "opened later", "ogr")):
        renderer = layer.renderer()
        assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "class_id"
        found = {str(c.value()): (c.label(), c.symbol().color().getRgb()[:3]) for c in renderer.categories()}
        assert found == expected
    project.clear()
    # as training labels the file goes to the engine as it is: its style table is no second data layer
    from mobanet_qgis.algorithms.base import layer_file

    labels = QgsVectorLayer(f"{polygons}|layername=classes", "labels", "ogr")
    assert layer_file(labels, "'Labels'", context, QgsProcessingFeedback()) == str(polygons)


def _raster(path: Path, bands: int, kind: str) -> Path:
    import numpy as np
    from osgeo import gdal

    from .conftest import CROP

    source = gdal.Open(str(ROOT / "resources" / "sample" / "sample_optical.tif"))
    types = {"byte": (gdal.GDT_Byte, np.uint8), "float": (gdal.GDT_Float32, np.float32)}
    gdal_type, dtype = types[kind]
    target = gdal.GetDriverByName("GTiff").Create(str(path), CROP[2], CROP[3], bands, gdal_type)
    target.SetGeoTransform(source.GetGeoTransform())
    target.SetProjection(source.GetProjection())
    for index in range(1, bands + 1):
        target.GetRasterBand(index).WriteArray(np.full((CROP[3], CROP[2]), index, dtype))
    target = None
    return path


@pytest.fixture
def project_rasters(tmp_path):
    """An optical image, a DSM, a label raster and a classification, as layers of the project."""
    from qgis.core import QgsProject, QgsRasterLayer

    specs = {"ortho": (3, "byte"), "surface": (1, "float"), "labels": (1, "byte"), "classes": (1, "byte")}
    layers = {name: QgsRasterLayer(str(_raster(tmp_path / f"{name}.tif", *spec)), name)
              for name, spec in specs.items()}
    QgsProject.instance().addMapLayers(list(layers.values()))
    return layers


def _starting_layers(algorithm_id: str, names: tuple[str, ...]) -> dict:
    """The layer each field of a freshly opened dialog shows (by layer name)."""
    import processing
    from qgis.core import QgsProject

    dialog = processing.createAlgorithmDialog(algorithm_id, {})
    wrappers = dialog.mainWidget().wrappers
    values = {name: QgsProject.instance().mapLayer(wrappers[name].parameterValue()) for name in names}
    dialog.close()
    return {name: layer.name() if layer is not None else None for name, layer in values.items()}


@pytest.mark.parametrize("active", ["ortho", "surface", "labels"])
def test_the_dsm_field_starts_on_a_surface_model_never_on_the_image(mobanet_provider, dialogs, project_rasters,
                                                                    active):
    dialogs.setActiveLayer(project_rasters[active])
    assert _starting_layers("mobanet:segment", ("OPTICAL", "DSM")) == {"OPTICAL": "ortho", "DSM": "surface"}


def test_without_a_surface_model_the_dsm_field_starts_on_another_layer_than_the_image(mobanet_provider, dialogs,
                                                                                      project_rasters):
    from qgis.core import QgsProject

    QgsProject.instance().removeMapLayer(project_rasters.pop("surface"))
    dialogs.setActiveLayer(project_rasters["ortho"])
    starting = _starting_layers("mobanet:segment", ("OPTICAL", "DSM"))
    assert starting["OPTICAL"] == "ortho" and starting["DSM"] not in (None, "ortho")


def test_the_reference_field_never_starts_on_the_classified_raster(mobanet_provider, dialogs, project_rasters):
    dialogs.setActiveLayer(project_rasters["classes"])
    starting = _starting_layers("mobanet:evaluate", ("PREDICTION", "REFERENCE"))
    assert starting["PREDICTION"] == "classes" and starting["REFERENCE"] == "labels"


def test_scripts_see_no_dialog_default(mobanet_provider, dialogs, project_rasters):
    """The starting layer is for the dialog only: processing.run without DSM is refused, not filled in."""
    import processing
    from qgis.core import QgsApplication, QgsProcessingException

    algorithm = QgsApplication.processingRegistry().algorithmById("mobanet:segment").create()
    assert algorithm.parameterDefinition("DSM").defaultValue() is None
    with pytest.raises(QgsProcessingException):
        processing.run("mobanet:segment", {"OPTICAL": project_rasters["ortho"], "OUTPUT": "memory:"})
