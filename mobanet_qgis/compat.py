"""QGIS API spelled for the QGIS this runs on, from QGIS 3.22 to QGIS 4 (Qt6): enums and a renamed method.

QGIS 3.36 and later moved many enums of QGIS classes into the ``Qgis``
namespace as scoped enums: the raster source type of ``QgsProcessing`` became
``Qgis.ProcessingSourceType.Raster``. QGIS 3.x keeps the old names as
aliases; QGIS 4 (PyQt6) is built around the new ones; QGIS 3.22 has only the
old ones. No single spelling is certain on all three, so each name below is
the ``Qgis`` enum where this QGIS has it, and otherwise a stand-in class
holding the same values under the same member names, read from the 3.22 enum
in its scoped form. The plugin writes ``ProcessingSourceType.Raster``
everywhere; when 3.22 support ends, this module becomes ``Qgis.<name>``.

Enums QGIS did not move have one scoped spelling that works everywhere
(``QgsVectorFileWriter.WriterError.NoError``) and need nothing here.
``tools/check_qt6.py`` (run by ``make lint``) rejects the unscoped Qt5 forms.
"""

from __future__ import annotations

from typing import Any

import qgis.core
from qgis.core import Qgis, QgsRasterFileWriter

# Qgis enum -> (QGIS 3.22 class, its enum, {member in Qgis: member in the 3.22 enum}).
# Only the members the plugin uses; tests/plugin/test_compat.py checks each pair where both exist.
BEFORE_QGIS_3_36: dict[str, tuple[str, str, dict[str, str]]] = {
    "ProcessingSourceType": ("QgsProcessing", "SourceType", {
        "MapLayer": "TypeMapLayer", "Raster": "TypeRaster", "VectorPolygon": "TypeVectorPolygon"}),
    "ProcessingNumberParameterType": ("QgsProcessingParameterNumber", "Type", {
        "Integer": "Integer", "Double": "Double"}),
    "ProcessingParameterFlag": ("QgsProcessingParameterDefinition", "Flag", {
        "Advanced": "FlagAdvanced", "Optional": "FlagOptional"}),
    "RasterInterfaceCapability": ("QgsRasterInterface", "Capability", {"Size": "Size"}),
    "RasterFileWriterResult": ("QgsRasterFileWriter", "WriterError", {"Success": "NoError"}),
    "ProcessingFileParameterBehavior": ("QgsProcessingParameterFile", "Behavior", {"File": "File", "Folder": "Folder"}),
}


def legacy_enum(name: str) -> type:
    """A class whose attributes are the QGIS 3.22 values of ``Qgis.<name>``'s members (same member names)."""
    holder, enum_name, members = BEFORE_QGIS_3_36[name]
    old_enum = getattr(getattr(qgis.core, holder), enum_name)
    return type(name, (), {member: getattr(old_enum, old_member) for member, old_member in members.items()})


def qgis_enum(name: str) -> Any:
    """``Qgis.<name>`` where this QGIS has it (3.36 and later, QGIS 4), else its 3.22 stand-in."""
    current = getattr(Qgis, name, None)
    return current if current is not None else legacy_enum(name)


ProcessingSourceType = qgis_enum("ProcessingSourceType")
ProcessingNumberParameterType = qgis_enum("ProcessingNumberParameterType")
ProcessingParameterFlag = qgis_enum("ProcessingParameterFlag")
RasterInterfaceCapability = qgis_enum("RasterInterfaceCapability")
RasterFileWriterResult = qgis_enum("RasterFileWriterResult")
ProcessingFileParameterBehavior = qgis_enum("ProcessingFileParameterBehavior")


def set_creation_options(writer: QgsRasterFileWriter, options: list[str]) -> None:
    """GDAL creation options of a raster writer: QGIS 3.44 renamed setCreateOptions (now deprecated)."""
    if hasattr(writer, "setCreationOptions"):
        writer.setCreationOptions(options)
    else:
        writer.setCreateOptions(options)
