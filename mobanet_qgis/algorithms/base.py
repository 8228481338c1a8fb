"""What every MoBaNet algorithm shares: help texts, layers as files, and the engine call.

The engine reads files with GDAL/OGR, so each input layer is handed over as a
path. Plain GDAL/OGR files pass through unchanged; layers that are not plain
files (the virtual raster provider, WMS/WCS, memory layers, a feature
selection, a layer inside a multi-layer GeoPackage) are first written to a
temporary GeoTIFF or GeoPackage in the Processing temporary folder.
"""

from __future__ import annotations

import os
from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingUtils,
    QgsProviderRegistry,
    QgsRasterBlockFeedback,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QIcon

from mobanet_qgis.compat import (
    ProcessingParameterFlag,
    RasterFileWriterResult,
    RasterInterfaceCapability,
    set_creation_options,
)
from mobanet_qgis.engine_process import EngineCommand, find_engine, run_engine

# A layer without a native pixel grid (WMS, WCS) is rendered to a GeoTIFF of at
# most this many pixels a side before the engine sees it.
MAX_RENDERED_SIDE = 20000

DEVICES = ("auto", "cpu", "cuda:0")
DEVICE_LABELS = ("Automatic (first CUDA GPU when available, else CPU)", "CPU", "CUDA GPU 0")


def _local_file(layer: QgsMapLayer, provider_key: str) -> tuple[str, str]:
    """(path, layer name) of a layer stored in a local file, or ('', '') when it is not."""
    if layer.providerType() != provider_key:
        return "", ""
    parts = QgsProviderRegistry.instance().decodeUri(provider_key, layer.source())
    path = parts.get("path") or ""
    if not path or not os.path.isfile(path):
        return "", ""
    return path, parts.get("layerName") or ""


def native_pixel_size(layer: QgsRasterLayer) -> float | None:
    """Pixel width in layer units, or None for layers without a grid of their own (WMS)."""
    provider = layer.dataProvider()
    if provider is None or not provider.capabilities() & RasterInterfaceCapability.Size:
        return None
    return layer.rasterUnitsPerPixelX()


def raster_layer_file(layer: QgsRasterLayer, name: str, context: QgsProcessingContext,
                      feedback: QgsProcessingFeedback, pixel_size: float | None = None) -> str:
    """A GDAL-readable file holding `layer`: its own file, or a temporary GeoTIFF copy.

    `pixel_size` (in layer units) is used for layers without a native grid.
    """
    path, sublayer = _local_file(layer, "gdal")
    if path and not sublayer:
        return path
    provider = layer.dataProvider()
    if provider is None or not layer.isValid():
        raise QgsProcessingException(f"The layer '{layer.name()}' ({name}) cannot be read: {layer.source()}")
    extent = QgsRectangle(layer.extent())
    if provider.capabilities() & RasterInterfaceCapability.Size:
        width, height = provider.xSize(), provider.ySize()
    else:
        if not pixel_size:
            raise QgsProcessingException(
                f"The layer '{layer.name()}' ({name}) has no pixel grid of its own (a web service?). "
                "Save it as a GeoTIFF first (right click -> Export -> Save As) and use that layer.")
        width = int(round(extent.width() / pixel_size))
        height = int(round(extent.height() / pixel_size))
        if max(width, height) > MAX_RENDERED_SIDE or min(width, height) < 1:
            raise QgsProcessingException(
                f"The layer '{layer.name()}' ({name}) would be {width} x {height} pixels at {pixel_size:g} "
                "units a pixel; set a smaller processing extent, or save the layer as a GeoTIFF first.")
    target = QgsProcessingUtils.generateTempFilename(f"{name.lower()}.tif")
    feedback.pushInfo(f"Writing the layer '{layer.name()}' ({name}) to a temporary GeoTIFF: {target}")
    writer = QgsRasterFileWriter(target)
    writer.setOutputFormat("GTiff")
    set_creation_options(writer, ["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
    pipe = QgsRasterPipe()
    if not pipe.set(provider.clone()):
        raise QgsProcessingException(f"The layer '{layer.name()}' ({name}) cannot be exported: no data provider.")
    block_feedback = QgsRasterBlockFeedback()
    feedback.canceled.connect(block_feedback.cancel)
    error = writer.writeRaster(pipe, width, height, extent, layer.crs(), context.transformContext(), block_feedback)
    if error != RasterFileWriterResult.Success:
        raise QgsProcessingException(
            f"Could not write the layer '{layer.name()}' ({name}) to {target} (raster writer error {error}).")
    return target


def vector_layer_file(layer: QgsVectorLayer, name: str, context: QgsProcessingContext,
                      feedback: QgsProcessingFeedback) -> str:
    """An OGR-readable single-layer file holding `layer`: its own file, or a temporary GeoPackage."""
    path, sublayer = _local_file(layer, "ogr")
    if path and not layer.subsetString() and (not sublayer or _single_layer_file(path)):
        return path
    target = QgsProcessingUtils.generateTempFilename(f"{name.lower()}.gpkg")
    feedback.pushInfo(f"Writing the layer '{layer.name()}' ({name}) to a temporary GeoPackage: {target}")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.fileEncoding = "UTF-8"
    error, message, _, _ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, target, context.transformContext(), options)
    if error != QgsVectorFileWriter.WriterError.NoError:
        raise QgsProcessingException(f"Could not write the layer '{layer.name()}' ({name}) to {target}: {message}")
    return target


def _single_layer_file(path: str) -> bool:
    from osgeo import ogr

    dataset = ogr.Open(path)
    return dataset is not None and dataset.GetLayerCount() == 1


def layer_file(layer: QgsMapLayer, name: str, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> str:
    """Raster or vector layer as a file the engine can open."""
    if isinstance(layer, QgsRasterLayer):
        return raster_layer_file(layer, name, context, feedback)
    if isinstance(layer, QgsVectorLayer):
        return vector_layer_file(layer, name, context, feedback)
    raise QgsProcessingException(f"The layer '{layer.name()}' ({name}) is neither a raster nor a vector layer.")


class MobanetHelp(QgsProcessingAlgorithm):
    """What every MoBaNet algorithm shows: group, icon, and help for each parameter."""

    def __init__(self):
        super().__init__()
        self._help: dict[str, str] = {}

    # -- identity ---------------------------------------------------------------------------
    def group(self) -> str:
        return ""

    def groupId(self) -> str:
        return ""

    def icon(self) -> QIcon:
        from mobanet_qgis.provider import provider_icon

        return provider_icon()

    def createInstance(self) -> QgsProcessingAlgorithm:
        return type(self)()

    # -- help -------------------------------------------------------------------------------
    def summary(self) -> str:
        """One paragraph on what the algorithm does (top of the help)."""
        raise NotImplementedError

    def add(self, parameter: QgsProcessingParameterDefinition, help_text: str, advanced: bool = False) -> None:
        """addParameter with its help: shown as tooltip and listed in the help panel."""
        parameter.setHelp(help_text)
        if advanced:
            parameter.setFlags(parameter.flags() | ProcessingParameterFlag.Advanced)
        self._help[parameter.name()] = help_text
        self.addParameter(parameter)

    def shortHelpString(self) -> str:
        items = []
        for definition in self.parameterDefinitions():
            text = self._help.get(definition.name())
            if text:
                items.append(f"<li><b>{definition.description()}</b> (<code>{definition.name()}</code>): {text}</li>")
        return f"<p>{self.summary()}</p><ul>{''.join(items)}</ul>"

    def helpString(self) -> str:
        return self.shortHelpString()


class MobanetAlgorithm(MobanetHelp):
    """Base of the algorithms that run an engine command: finds the engine first, then `process` runs it."""

    #: Engine sub-command, e.g. "segment".
    COMMAND = ""

    def __init__(self):
        super().__init__()
        self._engine: EngineCommand | None = None

    def name(self) -> str:
        return self.COMMAND

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        # Without an engine, fail at once with the sentence that names the fix, before any layer is exported.
        self._engine = find_engine()
        return self.process(parameters, context, feedback)

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback) -> dict[str, Any]:
        """The algorithm's own work: turn parameters into engine arguments, `run_engine`, return the results."""
        raise NotImplementedError

    # -- running ----------------------------------------------------------------------------
    def device_argument(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> str:
        return DEVICES[self.parameterAsEnum(parameters, name, context)]

    def run_engine(self, arguments: list[str], feedback: QgsProcessingFeedback,
                   outputs: list[str]) -> dict[str, Any]:
        return run_engine(self.COMMAND, arguments, feedback, outputs, self._engine)

    def raster_argument(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext,
                        feedback: QgsProcessingFeedback, pixel_size: float | None = None) -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, name))
        return raster_layer_file(layer, name, context, feedback, pixel_size)
