"""Headless `qgis_process run mobanet:segment` with a private QGIS profile (the user's is never touched).

QGIS 3.22's qgis_process has no --profiles-path option, but it honours
QGIS_CUSTOM_CONFIG_PATH: the profile is $QGIS_CUSTOM_CONFIG_PATH/profiles/default.
The plugin folder is linked into its python/plugins and enabled with
`qgis_process plugins enable mobanet_qgis` (what `make install` does for the
user's profile). Debian's /usr/bin/qgis_process wrapper passes an option 3.22
rejects, so the binary is called directly.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from osgeo import gdal

ROOT = Path(__file__).resolve().parents[2]
QGIS_PROCESS = "/usr/bin/qgis_process.bin"


@pytest.fixture(scope="module")
def qgis_process_env(tmp_path_factory):
    config = tmp_path_factory.mktemp("qgis-config")
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "mobanet_qgis").symlink_to(ROOT / "mobanet_qgis")
    runtime = tmp_path_factory.mktemp("xdg-runtime")
    runtime.chmod(0o700)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(runtime),
               QGIS_CUSTOM_CONFIG_PATH=str(config))
    enabled = subprocess.run([QGIS_PROCESS, "plugins", "enable", "mobanet_qgis"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return env


def test_qgis_process_lists_the_provider(qgis_process_env):
    listed = subprocess.run([QGIS_PROCESS, "list"], env=qgis_process_env, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    for algorithm in ("mobanet:segment", "mobanet:train", "mobanet:evaluate"):
        assert algorithm in listed.stdout


def test_qgis_process_runs_segment(qgis_process_env, scene, model_file, tmp_path):
    """No MODEL: the embedded default model (`model_file` checks it is there)."""
    output = tmp_path / "classes.tif"
    arguments = [f"OPTICAL={scene['optical']}", f"DSM={scene['dsm']}", f"OUTPUT={output}"]
    run = subprocess.run([QGIS_PROCESS, "--json", "run", "mobanet:segment", "--", *arguments],
                         env=qgis_process_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout[run.stdout.index("{"):])
    assert report["results"]["OUTPUT"] == str(output)
    classified, optical = gdal.Open(str(output)), gdal.Open(str(scene["optical"]))
    assert (classified.RasterXSize, classified.RasterYSize) == (optical.RasterXSize, optical.RasterYSize)
    assert classified.GetGeoTransform() == optical.GetGeoTransform()
    assert classified.GetRasterBand(1).GetColorTable() is not None
    assert output.with_suffix(".qml").is_file()
