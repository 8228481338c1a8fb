"""`mobanet:segment` with its advanced "Ray cluster address": the same result on Ray, the engine's message on error."""

import os
import socket
import subprocess

import pytest
from osgeo import gdal


def _classes(path):
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).ReadAsArray()


def test_the_parameter_is_optional_advanced_and_explained(mobanet_provider):
    from mobanet_qgis.compat import ProcessingParameterFlag

    algorithm = mobanet_provider.algorithm("segment")
    parameter = algorithm.parameterDefinition("RAY")
    assert parameter.description() == "Ray cluster address"
    assert parameter.flags() & ProcessingParameterFlag.Optional
    assert parameter.flags() & ProcessingParameterFlag.Advanced
    assert "ray start --head" in parameter.help() and "Ray cluster address" in algorithm.shortHelpString()


def _engine_has_ray() -> bool:
    from mobanet_qgis.engine_process import find_engine

    engine = find_engine()
    return subprocess.run([engine.python, "-c", "import ray"], capture_output=True, timeout=120,
                          env={**os.environ, **engine.env}).returncode == 0


@pytest.mark.slow
def test_local_ray_gives_the_single_process_result(mobanet_provider, scene, model_file, tmp_path):
    import processing

    if not _engine_has_ray():
        pytest.skip("the engine's Python has no Ray (make install puts it into .venv)")
    processing.run("mobanet:segment", {"OPTICAL": str(scene["optical"]), "DSM": str(scene["dsm"]),
                                       "MODEL": str(model_file), "OUTPUT": str(tmp_path / "single.tif")})
    results = processing.run("mobanet:segment", {
        "OPTICAL": str(scene["optical"]), "DSM": str(scene["dsm"]), "MODEL": str(model_file),
        "RAY": "local", "OUTPUT": str(tmp_path / "ray.tif")})
    assert results["OUTPUT"] == str(tmp_path / "ray.tif")
    assert (_classes(tmp_path / "ray.tif") == _classes(tmp_path / "single.tif")).mean() >= 0.9999
    assert not [p for p in tmp_path.iterdir() if ".tiles-" in p.name]  # the tile store is gone


def test_an_unreachable_address_surfaces_the_engines_message(mobanet_provider, scene, model_file, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"  # closed again when the block ends
    with pytest.raises(QgsProcessingException) as raised:
        processing.run("mobanet:segment", {
            "OPTICAL": str(scene["optical"]), "DSM": str(scene["dsm"]), "MODEL": str(model_file),
            "RAY": address, "OUTPUT": str(tmp_path / "classes.tif")})
    message = str(raised.value)
    assert f"No Ray cluster answers at {address}" in message and "ray start --head" in message
    assert "Traceback" not in message
    assert list(tmp_path.iterdir()) == []
