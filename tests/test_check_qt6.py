"""tools/check_qt6.py: each Qt5-only form is caught (one snippet per rule), Qt6-ready code passes, our tree passes."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import check_qt6  # noqa: E402

# (snippet, [(line, code), ...]) : every line of a snippet that is Qt5-only is listed with its rule.
CAUGHT = {
    "pyqt5 from-import": ("from PyQt5.QtCore import Qt\n", [(1, "QT601")]),
    "pyqt5 module import": ("import PyQt5.QtWidgets\n", [(1, "QT601")]),
    "pyqt6 import": ("from PyQt6 import QtCore\n", [(1, "QT601")]),
    "sip import": ("import sip\n", [(1, "QT601")]),
    "private qgis module": ("from qgis._core import QgsProcessing\n", [(1, "QT601")]),
    "exec_ call": ("def show(dialog):\n    return dialog.exec_()\n", [(2, "QT602")]),
    "exec_ definition": ("class Dialog:\n    def exec_(self):\n        return 0\n", [(2, "QT602")]),
    "print_ call": ("def render(document, printer):\n    document.print_(printer)\n", [(2, "QT602")]),
    "number type": ("from qgis.core import QgsProcessingParameterNumber\n"
                    "kind = QgsProcessingParameterNumber.Integer\n", [(2, "QT603")]),
    "double type in a call": ("from qgis.core import QgsProcessingParameterNumber\n"
                              "p = QgsProcessingParameterNumber('X', 'x', QgsProcessingParameterNumber.Double)\n",
                              [(2, "QT603")]),
    "advanced flag": ("from qgis.core import QgsProcessingParameterDefinition\n"
                      "def hide(p):\n    p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)\n",
                      [(3, "QT603")]),
    "source type": ("from qgis.core import QgsProcessing\ntypes = [QgsProcessing.TypeRaster]\n", [(2, "QT603")]),
    "raster capability through a subclass": ("from qgis.core import QgsRasterDataProvider\n"
                                             "size = QgsRasterDataProvider.Size\n", [(2, "QT603")]),
    "writer result": ("from qgis.core import QgsRasterFileWriter\nok = QgsRasterFileWriter.NoError\n",
                      [(2, "QT603")]),
    "Qgis message level": ("from qgis.core import Qgis\nlevel = Qgis.Info\n", [(2, "QT603")]),
    "Qt alignment": ("from qgis.PyQt.QtCore import Qt\nalign = Qt.AlignLeft | Qt.AlignTop\n",
                     [(2, "QT603"), (2, "QT603")]),
    "Qt widget enum": ("from qgis.PyQt.QtWidgets import QMessageBox\nanswer = QMessageBox.Ok\n", [(2, "QT603")]),
    "through a module alias": ("import qgis.core as core\nkind = core.QgsProcessing.TypeVectorPolygon\n",
                               [(2, "QT603")]),
    "flag through a parameter object": ("import qgis.core\n"
                                        "def optional(p):\n    return p.flags() & p.FlagOptional\n",
                                        [(3, "QT604")]),
    "flag through self": ("from qgis.core import QgsProcessingAlgorithm\n"
                          "class A(QgsProcessingAlgorithm):\n    def flags(self):\n"
                          "        return super().flags() | self.FlagNoThreading\n", [(4, "QT604")]),
    "dialog result through the dialog": ("from qgis.PyQt.QtWidgets import QDialog\n"
                                         "def accepted(dialog):\n    return dialog.result() == dialog.Accepted\n",
                                         [(3, "QT604")]),
    "QRegExp": ("from qgis.PyQt.QtCore import QRegExp\npattern = QRegExp('a+')\n", [(1, "QT605"), (2, "QT605")]),
    "qApp": ("from qgis.PyQt.QtWidgets import qApp\n", [(1, "QT605")]),
    "QVariant type": ("from qgis.PyQt.QtCore import QVariant\nkind = QVariant.Int\n", [(2, "QT605")]),
    "QVariant.Type scoped": ("from qgis.PyQt.QtCore import QVariant\nkind = QVariant.Type.Double\n",
                             [(2, "QT605")]),
}

# Code that runs on QGIS 3.22, 3.44 and 4 and must not be reported.
PASSES = {
    "scoped Qt enum": "from qgis.PyQt.QtCore import Qt\nalign = Qt.AlignmentFlag.AlignLeft\n",
    "scoped QGIS enum that stayed in its class": ("from qgis.core import QgsVectorFileWriter\n"
                                                  "ok = QgsVectorFileWriter.WriterError.NoError\n"),
    "compat names": ("from mobanet_qgis.compat import ProcessingParameterFlag, ProcessingSourceType\n"
                     "types = [ProcessingSourceType.Raster]\nflag = ProcessingParameterFlag.Advanced\n"),
    "exec and scoped dialog code": ("from qgis.PyQt.QtWidgets import QDialog\n"
                                    "def run(dialog):\n    return dialog.exec() == QDialog.DialogCode.Accepted\n"),
    "scoped flag through an object": ("import qgis.core\n"
                                      "def optional(p):\n    return p.flags() & p.Flag.FlagOptional\n"),
    "sip through qgis.PyQt": "from qgis.PyQt import sip\n",
    "methods named like enum values": ("import qgis.core\nfrom osgeo import gdal\n"
                                       "target = gdal.GetDriverByName('GTiff').Create('x.tif', 1, 1)\n"
                                       "kind = gdal.GDT_Byte\n"),
    "own constants": ("from qgis.core import QgsProcessingAlgorithm\n"
                      "class A(QgsProcessingAlgorithm):\n    COMMAND = 'segment'\n"
                      "    def name(self):\n        return self.COMMAND\n"),
    "code without Qt may use any attribute names": "def f(layer):\n    return layer.Raster, layer.FlagOptional\n",
}


def _check(tmp_path, source):
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(source))
    return check_qt6.check_file(path)


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_each_qt5_only_form_is_caught(tmp_path, name):
    source, expected = CAUGHT[name]
    findings = _check(tmp_path, source)
    assert sorted((f.line, f.code) for f in findings) == sorted(expected), [str(f) for f in findings]


@pytest.mark.parametrize("name", sorted(PASSES))
def test_qt6_ready_code_passes(tmp_path, name):
    assert [str(f) for f in _check(tmp_path, PASSES[name])] == []


def test_messages_name_the_form_to_write_instead(tmp_path):
    qt = _check(tmp_path, CAUGHT["Qt alignment"][0])
    assert "Qt.AlignmentFlag.AlignLeft" in qt[0].message or "Qt.AlignmentFlag.AlignLeft" in qt[1].message
    number = _check(tmp_path, CAUGHT["number type"][0])[0]
    assert "ProcessingNumberParameterType.Integer" in number.message and "mobanet_qgis.compat" in number.message
    through_object = _check(tmp_path, CAUGHT["flag through a parameter object"][0])[0]
    assert "ProcessingParameterFlag.Optional" in through_object.message


def test_command_line_reports_and_fails(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(CAUGHT["source type"][0])
    good = tmp_path / "good.py"
    good.write_text(PASSES["scoped Qt enum"])
    failed = subprocess.run([sys.executable, str(ROOT / "tools" / "check_qt6.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert f"{bad}:2:10: QT603 QgsProcessing.TypeRaster" in failed.stdout
    assert "good.py" not in failed.stdout
    passed = subprocess.run([sys.executable, str(ROOT / "tools" / "check_qt6.py"), str(good)],
                            capture_output=True, text=True, timeout=120)
    assert passed.returncode == 0, passed.stdout + passed.stderr


def test_the_plugin_its_tests_and_tools_have_no_qt5_only_forms():
    findings = [str(f) for path in check_qt6.python_files([ROOT / "mobanet_qgis", ROOT / "tests", ROOT / "tools"])
                for f in check_qt6.check_file(path)]
    assert findings == []
