"""Messages in the dialog's words: the engine names the fields a user filled in, never CLI flags."""

import json
import os
import re
import subprocess

import pytest

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")  # a CLI flag such as --weights (not a dash in a path or URL)


def _algorithm(algorithm_id):
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().algorithmById(algorithm_id).create()


# Run by the engine's Python (this one need not have torch): the options of each engine command.
ENGINE_OPTIONS = """
import json
from mobanet.cli import build_parser
commands = next(a for a in build_parser()._actions if a.dest == "command").choices
print(json.dumps({name: [f for a in p._actions for f in a.option_strings] for name, p in commands.items()}))
"""


@pytest.fixture(scope="module")
def engine_options(mobanet_provider):
    from mobanet_qgis.engine_process import find_engine

    engine = find_engine()
    completed = subprocess.run([engine.python, "-c", ENGINE_OPTIONS], capture_output=True, text=True,
                               env={**os.environ, **engine.env}, timeout=300, check=True)
    return json.loads(completed.stdout)


@pytest.mark.parametrize("command", ["segment", "train", "evaluate"])
def test_every_declared_flag_is_an_engine_option_and_has_its_field_label(engine_options, command):
    engine_flags = set(engine_options[command])
    algorithm = _algorithm(f"mobanet:{command}")
    labels = algorithm.option_labels()
    assert labels and set(labels) <= engine_flags, set(labels) - engine_flags
    descriptions = {p.description() for p in algorithm.parameterDefinitions()}
    assert set(labels.values()) <= descriptions


def _message(algorithm_id, parameters, monkeypatch=None, **environment):
    import processing
    from qgis.core import QgsProcessingException

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(QgsProcessingException) as raised:
        processing.run(algorithm_id, parameters)
    message = str(raised.value)
    assert "Traceback" not in message
    return message


def test_swapped_layers_are_named_by_their_fields(mobanet_provider, scene, model_file, tmp_path):
    message = _message("mobanet:segment", {"OPTICAL": str(scene["dsm"]), "DSM": str(scene["optical"]),
                                           "MODEL": str(model_file), "OUTPUT": str(tmp_path / "classes.tif")})
    assert str(scene["optical"]) in message
    assert "'Optical image'" in message and "'Surface model (DSM)'" in message
    assert not FLAG.search(message), message


def test_offline_training_names_the_file_to_get_and_the_field_for_it(mobanet_provider, scene, tmp_path, monkeypatch):
    """No weights file, no hub (HF_HUB_OFFLINE, an empty cache): the answer comes before any download attempt."""
    from mobanet_qgis.algorithms.train import BACKBONES

    message = _message("mobanet:train", {
        "OPTICAL": [str(scene["optical"])], "DSM": [str(scene["dsm"])], "LABELS": [str(scene["labels"])],
        "BACKBONE": BACKBONES.index("dinov2_vits14"), "EPOCHS": 1, "ITERATIONS": 1, "DEVICE": 1,
        "OUTPUT": str(tmp_path / "mine.safetensors")}, monkeypatch,
        HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty-cache"))
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth" in message
    assert "'Backbone weights file'" in message
    assert not FLAG.search(message), message
    assert not list(tmp_path.glob("mine*"))


def test_polygon_labels_without_a_class_field_name_the_field_to_fill(mobanet_provider, scene, tmp_path):
    from osgeo import gdal, ogr, osr

    raster = gdal.Open(str(scene["labels"]))
    x0, dx, _, y0, _, dy = raster.GetGeoTransform()
    polygons = tmp_path / "labels.gpkg"
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(polygons))
    layer = dataset.CreateLayer("labels", osr.SpatialReference(wkt=raster.GetProjection()), ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("kind", ogr.OFTString))
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetField("kind", "building")
    x1, y1 = x0 + 40 * dx, y0 + 40 * dy
    feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"))
    layer.CreateFeature(feature)
    del feature, layer, dataset

    message = _message("mobanet:train", {
        "OPTICAL": [str(scene["optical"])], "DSM": [str(scene["dsm"])], "LABELS": [str(polygons)],
        "BACKBONE": 8, "EPOCHS": 1, "ITERATIONS": 1, "DEVICE": 1, "OUTPUT": str(tmp_path / "m.safetensors")})
    assert "labels.gpkg" in message and "'Class field of label polygons'" in message
    assert not FLAG.search(message), message


def test_plugin_messages_name_fields_too(mobanet_provider, scene, tmp_path):
    message = _message("mobanet:train", {
        "OPTICAL": [str(scene["optical"]), str(scene["optical"])], "DSM": [str(scene["dsm"])],
        "LABELS": [str(scene["labels"])], "BACKBONE": 8, "OUTPUT": str(tmp_path / "m.safetensors")})
    assert "2 in 'Optical images'" in message and "1 in 'Surface models (DSM)'" in message
    assert "OPTICAL" not in message

