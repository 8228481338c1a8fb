"""What every MoBaNet algorithm shares: parameters with help and engine flag, layers as files, the engine call.

The engine reads files with GDAL/OGR, so each input layer is handed over as a
path. Plain GDAL/OGR files pass through unchanged; layers that are not plain
files (the virtual raster provider, WMS/WCS, memory layers, a feature
selection, a layer inside a multi-layer GeoPackage) are first written to a
temporary GeoTIFF or GeoPackage in the Processing temporary folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterDefinition,
    QgsProcessingParameters,
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


def _temporary_file(field: str, extension: str) -> str:
    """A new file in the Processing temporary folder, named after the field."""
    stem = re.sub(r"[^a-z0-9]+", "_", field.lower()).strip("_") or "layer"
    return QgsProcessingUtils.generateTempFilename(f"{stem}.{extension}")


def raster_layer_file(layer: QgsRasterLayer, field: str, context: QgsProcessingContext,
                      feedback: QgsProcessingFeedback, pixel_size: float | None = None) -> str:
    """A GDAL-readable file holding `layer`: its own file, or a temporary GeoTIFF copy.

    `field` names the dialog field the layer was given in (messages and the
    temporary file's name); `pixel_size` (in layer units) is used for layers
    without a native grid.
    """
    path, sublayer = _local_file(layer, "gdal")
    if path and not sublayer:
        return path
    provider = layer.dataProvider()
    if provider is None or not layer.isValid():
        raise QgsProcessingException(
            f"{field}: the layer '{layer.name()}' cannot be read ({layer.source()}); choose another layer.")
    extent = QgsRectangle(layer.extent())
    if provider.capabilities() & RasterInterfaceCapability.Size:
        width, height = provider.xSize(), provider.ySize()
    else:
        if not pixel_size:
            raise QgsProcessingException(
                f"{field}: the layer '{layer.name()}' has no pixel grid of its own (a web service?); save it "
                "as a GeoTIFF first (right click -> Export -> Save As) and use that layer.")
        width = int(round(extent.width() / pixel_size))
        height = int(round(extent.height() / pixel_size))
        if max(width, height) > MAX_RENDERED_SIDE or min(width, height) < 1:
            raise QgsProcessingException(
                f"{field}: the layer '{layer.name()}' would be {width} x {height} pixels at {pixel_size:g} "
                "units a pixel; set a smaller processing extent, or save the layer as a GeoTIFF first.")
    target = _temporary_file(field, "tif")
    feedback.pushInfo(f"{field}: writing the layer '{layer.name()}' to a temporary GeoTIFF: {target}")
    writer = QgsRasterFileWriter(target)
    writer.setOutputFormat("GTiff")
    set_creation_options(writer, ["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
    pipe = QgsRasterPipe()
    if not pipe.set(provider.clone()):
        raise QgsProcessingException(f"{field}: the layer '{layer.name()}' cannot be exported (no data provider); "
                                     "save it as a GeoTIFF first and use that layer.")
    block_feedback = QgsRasterBlockFeedback()
    feedback.canceled.connect(block_feedback.cancel)
    error = writer.writeRaster(pipe, width, height, extent, layer.crs(), context.transformContext(), block_feedback)
    if error != RasterFileWriterResult.Success:
        raise QgsProcessingException(
            f"{field}: could not write the layer '{layer.name()}' to {target} (raster writer error {error}); "
            "check the free space of the Processing temporary folder.")
    return target


def vector_layer_file(layer: QgsVectorLayer, field: str, context: QgsProcessingContext,
                      feedback: QgsProcessingFeedback) -> str:
    """An OGR-readable single-layer file holding `layer`: its own file, or a temporary GeoPackage."""
    path, sublayer = _local_file(layer, "ogr")
    if path and not layer.subsetString() and (not sublayer or _single_layer_file(path)):
        return path
    target = _temporary_file(field, "gpkg")
    feedback.pushInfo(f"{field}: writing the layer '{layer.name()}' to a temporary GeoPackage: {target}")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.fileEncoding = "UTF-8"
    error, message, _, _ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, target, context.transformContext(), options)
    if error != QgsVectorFileWriter.WriterError.NoError:
        raise QgsProcessingException(f"{field}: could not write the layer '{layer.name()}' to {target} "
                                     f"({message}); check the free space of the Processing temporary folder.")
    return target


def _single_layer_file(path: str) -> bool:
    """One data layer, the first (the one the engine reads); a GeoPackage's style table does not count."""
    from osgeo import ogr

    dataset = ogr.Open(path)
    if dataset is None:
        return False
    names = [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())]
    return len(names) >= 1 and all(name == "layer_styles" for name in names[1:])


def layer_file(layer: QgsMapLayer, field: str, context: QgsProcessingContext,
               feedback: QgsProcessingFeedback) -> str:
    """Raster or vector layer as a file the engine can open."""
    if isinstance(layer, QgsRasterLayer):
        return raster_layer_file(layer, field, context, feedback)
    if isinstance(layer, QgsVectorLayer):
        return vector_layer_file(layer, field, context, feedback)
    raise QgsProcessingException(f"{field}: the layer '{layer.name()}' is neither a raster nor a vector layer; "
                                 "choose a raster or a polygon layer.")


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

    def field(self, name: str) -> str:
        """How messages name the parameter ``name``: its label in the dialog, quoted."""
        definition = self.parameterDefinition(name)
        return f"'{definition.description()}'" if definition is not None else name


class MobanetAlgorithm(MobanetHelp):
    """Base of the algorithms that run an engine command: finds the engine first, then `process` runs it.

    Each parameter is declared once, with `add`: its help and the engine flag
    it feeds. The engine's command line is built from those declarations
    (`engine_arguments`), and the engine learns the field label of each flag
    so that its messages name the dialog's fields, not CLI flags.
    """

    #: Engine sub-command, e.g. "segment".
    COMMAND = ""

    def __init__(self):
        super().__init__()
        self._engine: EngineCommand | None = None
        self._flags: dict[str, str] = {}  # parameter name -> engine flag it feeds
        self._choices: dict[str, tuple[str, ...]] = {}  # enum parameter -> engine value of each option

    def name(self) -> str:
        return self.COMMAND

    def add(self, parameter: QgsProcessingParameterDefinition, help_text: str, advanced: bool = False,
            flag: str = "", choices: tuple[str, ...] = ()) -> None:
        """addParameter with its help and the engine ``flag`` it feeds ('' for none).

        ``choices``: for an enum parameter, the engine value of each option.
        """
        if flag:
            self._flags[parameter.name()] = flag
        if choices:
            self._choices[parameter.name()] = tuple(choices)
        super().add(parameter, help_text, advanced)

    def option_labels(self) -> dict[str, str]:
        """Engine flag -> the label of the field that feeds it."""
        return {flag: self.parameterDefinition(name).description() for name, flag in self._flags.items()}

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        # Without an engine, fail at once with the sentence that names the fix, before any layer is exported.
        self._engine = find_engine()
        return self.process(parameters, context, feedback)

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback) -> dict[str, Any]:
        """The algorithm's own work: turn parameters into engine arguments, `run_engine`, return the results."""
        raise NotImplementedError

    # -- the engine's command line ------------------------------------------------------------
    def engine_arguments(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback, values: dict[str, Any] | None = None) -> list[str]:
        """Flag and value of every parameter that feeds one, in declaration order.

        ``values`` holds the values an algorithm resolves itself (e.g. layers
        exported with knowledge of another layer); the others are read here.
        None, '', False and [] leave the flag out; True gives the bare flag; a
        list repeats it.
        """
        values = values or {}
        arguments: list[str] = []
        for definition in self.parameterDefinitions():
            name = definition.name()
            flag = self._flags.get(name)
            if not flag:
                continue
            value = values[name] if name in values else self.engine_value(definition, parameters, context, feedback)
            if value is None or value == "" or value is False:
                continue
            if value is True:
                arguments.append(flag)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    arguments += [flag, str(item)]
            else:
                arguments += [flag, str(value)]
        return arguments

    def engine_value(self, definition: QgsProcessingParameterDefinition, parameters: dict[str, Any],
                     context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> Any:
        """The engine's value of one parameter, by parameter type (see `engine_arguments`)."""
        name, kind = definition.name(), definition.type()
        if kind == "raster":
            return self.raster_argument(parameters, name, context, feedback)
        if kind == "multilayer":
            return self.layer_list_argument(parameters, name, context, feedback)
        if kind == "file":
            return self.parameterAsFile(parameters, name, context)
        if kind == "enum":
            return self._choices[name][self.parameterAsEnum(parameters, name, context)]
        if kind == "number":
            if definition.defaultValue() is None and parameters.get(name) in (None, ""):
                return None  # an optional number left empty: the engine decides
            return _number_text(self.parameterAsDouble(parameters, name, context))
        if kind == "boolean":
            return self.parameterAsBoolean(parameters, name, context)
        if kind == "string":
            return self.parameterAsString(parameters, name, context).strip()
        if kind == "band":
            return ",".join(str(band) for band in self.parameterAsInts(parameters, name, context))
        if kind in ("rasterDestination", "vectorDestination", "fileDestination"):
            return self.requested_output(parameters, name, context)
        raise NotImplementedError(f"{self.id()}: no engine value for {name} of type {kind}")

    def raster_argument(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext,
                        feedback: QgsProcessingFeedback, pixel_size: float | None = None) -> str:
        """The file of a raster layer parameter ('' when an optional one is left empty)."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            if parameters.get(name) in (None, ""):
                return ""  # optional and unset: required ones are checked by QGIS before processAlgorithm
            raise QgsProcessingException(
                f"{self.field(name)}: the layer {parameters.get(name)!s} cannot be loaded as a raster; choose "
                "another layer or file.")
        return raster_layer_file(layer, self.field(name), context, feedback, pixel_size)

    def layer_list_argument(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext,
                            feedback: QgsProcessingFeedback) -> list[str]:
        """The files of a multiple-layer parameter, in order."""
        layers = self.parameterAsLayerList(parameters, name, context)
        return [layer_file(layer, f"{self.field(name)} (layer {k})", context, feedback)
                for k, layer in enumerate(layers, start=1)]

    def requested_output(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> str:
        """The file of an output parameter, or '' when the user did not ask for this optional output.

        QGIS 3.22's batch panel passes an empty destination for every optional
        output column left blank, and reading it as an output layer queues ''
        for loading: each row then ends in "The following layers were not
        correctly generated". The value is therefore read as a plain file name
        first, which queues nothing.
        """
        definition = self.parameterDefinition(name)
        value = parameters.get(name)
        if value is None or not QgsProcessingParameters.parameterAsFileOutput(definition, value, context):
            return ""
        if definition.type() == "fileDestination":
            return self.parameterAsFileOutput(parameters, name, context)
        return self.parameterAsOutputLayer(parameters, name, context)

    def name_loaded_layer(self, parameters: dict[str, Any], name: str, path: str, context: QgsProcessingContext,
                          source: QgsMapLayer | None = None) -> None:
        """Name the layer QGIS loads from output ``name``: after its file, or '<field> (<source layer>)'.

        QGIS 3.22 names every loaded output after its field ("Land cover"),
        so a batch run loads rows of indistinguishable layers. A name the user
        or a model gave the output is kept.
        """
        if not path or not context.willLoadLayerOnCompletion(path):
            return
        value = parameters.get(name)
        if isinstance(value, QgsProcessingOutputLayerDefinition) and value.destinationName:
            return
        details = context.layerToLoadOnCompletionDetails(path)
        label = self.parameterDefinition(name).description()
        temporary = Path(path).resolve().is_relative_to(Path(QgsProcessingUtils.tempFolder()).resolve())
        if not temporary:
            details.name = Path(path).stem
        elif source is not None:
            details.name = f"{label} ({source.name()})"

    # -- running ----------------------------------------------------------------------------
    def run_engine(self, arguments: list[str], feedback: QgsProcessingFeedback,
                   outputs: list[str]) -> dict[str, Any]:
        return run_engine(self.COMMAND, arguments, feedback, outputs, self._engine, self.option_labels())


def _number_text(value: float) -> str:
    """A number for the engine's command line: integers without a decimal point (argparse int options)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
