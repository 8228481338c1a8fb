"""Inputs that every worker of a cluster can read: GDAL virtual paths are kept as given (Path would fold '//')."""

from mobanet.raster import segment
from mobanet.raster.scene import input_path

from .conftest import read


def test_virtual_paths_stay_as_given_and_local_paths_become_paths(tmp_path):
    url = "/vsicurl/https://example.org/tiles//ortho.tif"
    assert input_path(url) == url
    assert input_path("/vsis3/bucket/ortho.tif") == "/vsis3/bucket/ortho.tif"
    assert input_path(str(tmp_path / "a.tif")) == tmp_path / "a.tif"


def test_inputs_over_http_give_the_same_classes_as_local_files(scene_300, model_56, http_files, tmp_path):
    local = segment(*scene_300, tmp_path / "local.tif", model=model_56)
    remote = segment(*http_files, tmp_path / "remote.tif", model=model_56)
    assert (read(tmp_path / "remote.tif") == read(tmp_path / "local.tif")).all()
    assert remote["class_pixels"] == local["class_pixels"]
