"""The QGIS plugin object: registers the MoBaNet Processing provider, in QGIS and in qgis_process."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication

from mobanet_qgis.provider import MobanetProvider


class MobanetPlugin:
    """Adds the provider on load and removes it on unload; no menus or toolbars of its own."""

    def __init__(self, iface: Any = None):
        self.iface = iface
        self.provider: MobanetProvider | None = None

    def initProcessing(self) -> None:
        if self.provider is None:
            self.provider = MobanetProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
