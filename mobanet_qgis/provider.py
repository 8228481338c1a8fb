"""The Processing provider `mobanet` ("MoBaNet"): its algorithms, icon and the engine-Python setting."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from mobanet_qgis.algorithms.evaluate import EvaluateAlgorithm
from mobanet_qgis.algorithms.segment import SegmentAlgorithm
from mobanet_qgis.algorithms.setup import SetupAlgorithm
from mobanet_qgis.algorithms.train import TrainAlgorithm
from mobanet_qgis.engine_process import ENGINE_PYTHON_SETTING

ICON_PATH = Path(__file__).resolve().parent / "icons" / "mobanet.svg"


def provider_icon() -> QIcon:
    return QIcon(str(ICON_PATH))


def _processing_config() -> tuple[type, type] | None:
    """The Processing plugin's (ProcessingConfig, Setting); None when a script loads the provider without it."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:
        return None
    return ProcessingConfig, Setting


class MobanetProvider(QgsProcessingProvider):
    """Segment, train and evaluate with MoBaNet (each runs the engine as a separate process); set up the engine."""

    def id(self) -> str:
        return "mobanet"

    def name(self) -> str:
        return "MoBaNet"

    def longName(self) -> str:
        return "MoBaNet multimodal land-cover segmentation (optical + DSM)"

    def icon(self) -> QIcon:
        return provider_icon()

    def svgIconPath(self) -> str:
        return str(ICON_PATH)

    def load(self) -> bool:
        config = _processing_config()
        if config is not None:
            processing_config, setting = config
            processing_config.settingIcons[self.name()] = self.icon()
            processing_config.addSetting(setting(
                self.name(), ENGINE_PYTHON_SETTING,
                "Engine Python (with torch, timm and GDAL; empty = the one 'Set up the engine' made)",
                "", valuetype=setting.FILE))
            processing_config.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        config = _processing_config()
        if config is not None:
            config[0].removeSetting(ENGINE_PYTHON_SETTING)

    def loadAlgorithms(self) -> None:
        for algorithm in (SegmentAlgorithm(), TrainAlgorithm(), EvaluateAlgorithm(), SetupAlgorithm()):
            self.addAlgorithm(algorithm)

    def supportedOutputRasterLayerExtensions(self) -> list[str]:
        return ["tif"]

    def supportedOutputVectorLayerExtensions(self) -> list[str]:
        return ["gpkg"]

    def defaultRasterFileExtension(self) -> str:
        return "tif"

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:
        return "gpkg"
