"""Test-wide settings. Nothing here imports torch: the plugin tests run under a QGIS Python without it
(`make test-ltr`), since the plugin runs the engine as a separate process."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
