"""A real QgsProcessingFeedback that records what a set-up reports, and can cancel when a line appears."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def make_recorder(cancel_when: Callable[[str], bool] | None = None):
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        """Keeps every message; cancels (like the dialog's Cancel button) when `cancel_when(line)` is true."""

        def __init__(self):
            super().__init__()
            self.infos: list[str] = []
            self.warnings: list[str] = []
            self.console: list[str] = []
            self.commands: list[str] = []
            self.texts: list[str] = []
            self.progress: list[float] = []

        def _seen(self, line: str) -> None:
            if cancel_when is not None and cancel_when(line):
                self.cancel()

        def pushInfo(self, info):
            self.infos.append(info)
            self._seen(info)

        def pushWarning(self, warning):
            self.warnings.append(warning)

        def pushConsoleInfo(self, info):
            self.console.append(info)
            self._seen(info)

        def pushCommandInfo(self, info):
            self.commands.append(info)

        def pushDebugInfo(self, info):
            pass

        def setProgressText(self, text):
            self.texts.append(text)

        def setProgress(self, progress):
            self.progress.append(progress)
            super().setProgress(progress)

        def log(self) -> str:
            return "\n".join(self.commands + self.infos + self.warnings + self.console + self.texts)

    return Recorder()


@pytest.fixture
def recorder(qgis_app):
    return make_recorder
