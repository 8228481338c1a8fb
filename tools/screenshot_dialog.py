"""Screenshot of the real QGIS dialog of `mobanet:segment` for the README (docs/images/segment-dialog.png).

Run under a virtual display:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tools/screenshot_dialog.py

It starts the QGIS desktop application with a throw-away profile in which the
plugin is linked and enabled, loads the bundled sample as two layers, and has
QGIS run this same file (``qgis --code``): that part opens the Processing
dialog with ``processing.createAlgorithmDialog``, grabs it to a PNG and quits.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

OUTPUT_ENV = "MOBANET_SCREENSHOT_OUTPUT"
LAYERS_ENV = "MOBANET_SCREENSHOT_LAYERS"
DIALOG_SIZE = (980, 760)


def _inside_qgis() -> None:
    """Runs inside QGIS (``--code``): open the dialog, grab it, quit."""
    import processing
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QLineEdit
    from qgis.utils import iface

    optical_path, dsm_path = os.environ[LAYERS_ENV].split(os.pathsep)
    optical = QgsRasterLayer(optical_path, "sample_optical")
    dsm = QgsRasterLayer(dsm_path, "sample_dsm")
    QgsProject.instance().addMapLayers([optical, dsm])
    iface.mapCanvas().setExtent(optical.extent())

    dialog = processing.createAlgorithmDialog("mobanet:segment", {"OPTICAL": optical, "DSM": dsm,
                                                                   "BANDS": [1, 2, 3]})
    dialog.resize(*DIALOG_SIZE)
    dialog.show()

    def grab() -> None:
        dialog.raise_()
        dialog.activateWindow()
        dialog.runButton().setFocus()
        for line_edit in dialog.findChildren(QLineEdit):
            line_edit.deselect()  # no selected text: windows under Xvfb get no focus changes
        ok = dialog.grab().save(os.environ[OUTPUT_ENV], "PNG")
        print(f"screenshot {'written' if ok else 'FAILED'}: {os.environ[OUTPUT_ENV]}", flush=True)
        dialog.close()
        QgsApplication.exit(0 if ok else 1)

    QTimer.singleShot(3000, grab)


def _profile(folder: Path, plugin: Path) -> Path:
    """A QGIS profile root with only our plugin linked and enabled."""
    profile = folder / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "mobanet_qgis").symlink_to(plugin)
    settings = profile / "QGIS"
    settings.mkdir()
    (settings / "QGIS3.ini").write_text(
        "[PythonPlugins]\nmobanet_qgis=true\nprocessing=true\n"
        "[qgis]\ncheckVersion=false\nshowTips=false\n")
    return folder


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=root / "docs" / "images" / "segment-dialog.png")
    parser.add_argument("--optical", type=Path, default=root / "resources" / "sample" / "sample_optical.tif")
    parser.add_argument("--dsm", type=Path, default=root / "resources" / "sample" / "sample_dsm.tif")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    if not os.environ.get("DISPLAY"):
        parser.error("no DISPLAY: run under xvfb-run (see the module docstring)")
    for path in (args.optical, args.dsm):
        if not path.is_file():
            parser.error(f"{path} is missing: run `make sample` first")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="mobanet-screenshot-") as scratch:
        runtime = Path(scratch) / "xdg"
        runtime.mkdir(mode=0o700)
        # GDAL_PAM_ENABLED=NO: QGIS would otherwise write statistics (.aux.xml) beside the sample files.
        env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), QT_QPA_PLATFORM="xcb", GDAL_PAM_ENABLED="NO",
                   **{OUTPUT_ENV: str(args.output.resolve()),
                      LAYERS_ENV: os.pathsep.join(str(p.resolve()) for p in (args.optical, args.dsm))})
        profiles = _profile(Path(scratch) / "config", root / "mobanet_qgis")
        command = ["qgis", "--profiles-path", str(profiles), "--nologo", "--noversioncheck",
                   "--code", str(Path(__file__).resolve())]
        completed = subprocess.run(command, env=env, timeout=args.timeout)
    if not args.output.is_file():
        print(f"QGIS ended with code {completed.returncode} without writing {args.output}", file=sys.stderr)
        return 1
    print(args.output)
    return 0


# QGIS runs this file with ``--code`` (no ``__file__`` there); a plain Python runs main().
if os.environ.get(OUTPUT_ENV) and getattr(sys.modules.get("qgis.utils"), "iface", None) is not None:
    _inside_qgis()
elif __name__ == "__main__":
    raise SystemExit(main())
