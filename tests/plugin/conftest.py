"""The MoBaNet plugin inside a real QGIS (pytest-qgis): provider registration, scenes and a model file.

Scenes are crops of the bundled sample (`resources/sample`), kept small so that
each engine run takes seconds; the model is the embedded default model. The
tests need no torch: the plugin runs the engine in its own process, so this
Python needs only QGIS, GDAL and the engine's torch-free modules (the model
card), which are imported from the source tree (`make test-ltr` runs these tests
under a QGIS whose Python has no torch).
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from osgeo import gdal

ROOT = Path(__file__).resolve().parents[2]
for source in (ROOT, ROOT / "engine"):  # mobanet_qgis, and the engine's torch-free mobanet.card
    if str(source) not in sys.path:
        sys.path.insert(0, str(source))

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
def model_file() -> Path:
    assert DEFAULT_MODEL.is_file(), f"the embedded default model {DEFAULT_MODEL} is missing: run `make default-model`"
    return DEFAULT_MODEL


def read_model_card(path: Path):  # noqa: ANN201 - mobanet.card.ModelCard
    """The model card of a model file, read from its safetensors header (8-byte length, JSON) without torch."""
    from mobanet.card import CARD_KEY, ModelCard

    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return ModelCard.from_json(header["__metadata__"][CARD_KEY])


@pytest.fixture(scope="session")
def model_card_of():
    return read_model_card


class RecordingFeedback:
    """Factory of a real QgsProcessingFeedback that keeps what an algorithm or the engine set-up reports.

    ``cancel_on_progress``: cancel at the first progress text; ``cancel_when(line)``: cancel when an info or
    console line matches. Either stands for the dialog's Cancel button.
    """

    @staticmethod
    def create(cancel_on_progress: bool = False, cancel_when: Callable[[str], bool] | None = None):
        from qgis.core import QgsProcessingFeedback

        class _Feedback(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.infos: list[str] = []
                self.warnings: list[str] = []
                self.console: list[str] = []  # pushConsoleInfo: the engine's and pip's own output
                self.commands: list[str] = []
                self.debug: list[str] = []
                self.progress_texts: list[str] = []
                self.timeline: list[tuple[str, object]] = []  # ("progress", percent) and ("text", message) in order
                self.progressChanged.connect(lambda value: self.timeline.append(("progress", value)))

            @property
            def percents(self) -> list[float]:
                return [value for kind, value in self.timeline if kind == "progress"]

            def _seen(self, line: str) -> None:
                if cancel_when is not None and cancel_when(line):
                    self.cancel()

            def pushInfo(self, info):
                self.infos.append(info)
                super().pushInfo(info)
                self._seen(info)

            def pushWarning(self, warning):
                self.warnings.append(warning)
                super().pushWarning(warning)

            def pushConsoleInfo(self, info):
                self.console.append(info)
                super().pushConsoleInfo(info)
                self._seen(info)

            def pushCommandInfo(self, info):
                self.commands.append(info)
                super().pushCommandInfo(info)

            def pushDebugInfo(self, info):
                self.debug.append(info)
                super().pushDebugInfo(info)

            def setProgressText(self, text):
                self.progress_texts.append(text)
                self.timeline.append(("text", text))
                super().setProgressText(text)
                if cancel_on_progress:
                    self.cancel()

            def log(self) -> str:
                return "\n".join(self.commands + self.infos + self.warnings + self.console + self.progress_texts)

            def engine_pid(self) -> int | None:
                for line in self.debug:
                    if line.startswith("Engine process ") and line.endswith(" started"):
                        return int(line.split()[2])
                return None

        return _Feedback()


@pytest.fixture(scope="session")
def recording_feedback():
    return RecordingFeedback.create
