"""The MoBaNet plugin inside a real QGIS (pytest-qgis): provider registration, scenes and a model file.

Scenes are crops of the bundled sample (`resources/sample`), kept small so that
each engine run takes seconds. The model is the embedded default model when it
exists, else a tiny random MoBaNet saved to a real model file (fine for
plumbing: the tests check grids, styles, messages and process handling, not
accuracy).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from osgeo import gdal

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "resources" / "sample"
DEFAULT_MODEL = ROOT / "resources" / "models" / "mobanet-demo-tiny.safetensors"
CROP = (0, 0, 168, 140)  # xoff, yoff, width, height: small, not square, not a multiple of 14 in x

gdal.UseExceptions()


@pytest.fixture(scope="session")
def mobanet_provider(qgis_processing):
    """The provider, registered the way QGIS and qgis_process do it: through the plugin's initProcessing."""
    from qgis.core import QgsApplication

    from mobanet_qgis import classFactory

    plugin = classFactory(None)
    plugin.initProcessing()
    provider = QgsApplication.processingRegistry().providerById("mobanet")
    assert provider is not None
    yield provider
    plugin.unload()


def _sample_files() -> dict[str, Path]:
    files = {kind: SAMPLE / f"sample_{kind}.tif" for kind in ("optical", "dsm", "labels")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    assert not missing, f"the bundled sample is missing ({', '.join(missing)}): run `make sample`"
    return files


@pytest.fixture(scope="session")
def sample_full(tmp_path_factory) -> dict[str, Path]:
    """A copy of the whole sample: QGIS writes statistics (.aux.xml) beside rasters it opens."""
    folder = tmp_path_factory.mktemp("sample")
    copies = {}
    for kind, source in _sample_files().items():
        copies[kind] = folder / source.name
        shutil.copyfile(source, copies[kind])
    return copies


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> dict[str, Path]:
    """Optical, DSM and label GeoTIFFs: a crop of the sample that keeps its CRS and grid."""
    folder = tmp_path_factory.mktemp("scene")
    files = {}
    for kind, source in _sample_files().items():
        files[kind] = folder / f"{kind}.tif"
        gdal.Translate(str(files[kind]), str(source), srcWin=list(CROP))
    return files


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    import torch

    from mobanet.card import ModelCard
    from mobanet.model import MoBaNetConfig, build_model
    from mobanet.modelfile import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, build_model(MoBaNetConfig()), ModelCard(window=168), full=True)
    return path


class RecordingFeedback:
    """Factory of a real QgsProcessingFeedback that records what the algorithm reports."""

    @staticmethod
    def create(cancel_on_progress: bool = False):
        from qgis.core import QgsProcessingFeedback

        class _Feedback(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.infos: list[str] = []
                self.debug: list[str] = []
                self.progress_texts: list[str] = []

            def pushInfo(self, info):
                self.infos.append(info)
                super().pushInfo(info)

            def pushDebugInfo(self, info):
                self.debug.append(info)
                super().pushDebugInfo(info)

            def setProgressText(self, text):
                self.progress_texts.append(text)
                super().setProgressText(text)
                if cancel_on_progress:
                    self.cancel()

            def engine_pid(self) -> int | None:
                for line in self.debug:
                    if line.startswith("Engine process ") and line.endswith(" started"):
                        return int(line.split()[2])
                return None

        return _Feedback()


@pytest.fixture(scope="session")
def recording_feedback():
    return RecordingFeedback.create
