"""`mobanet:segment`: land-cover classes from an optical layer and, when there is one, a DSM layer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from mobanet_qgis.algorithms.base import DEVICE_LABELS, DEVICES, MobanetAlgorithm, native_pixel_size, raster_layer_file
from mobanet_qgis.algorithms.layer_choice import looks_like_dsm, looks_like_optical, start_on
from mobanet_qgis.compat import ProcessingNumberParameterType, ProcessingSourceType

STYLE_SUFFIX = ".qml"
DSM_GAP_MODES = ("predict", "nodata")  # the engine's --dsm-gaps choices; the first is its default
DSM_GAP_LABELS = ("Predict them from the optical image alone", "Leave them as nodata")
# The engine's default tiling plan (mobanet.raster.tiling.DEFAULT_PLAN), used when neither OVERLAP nor MARGIN is set,
# and why it is the default (benchmarks/results/tiling.md).
DEFAULT_TILING = ("windows overlapping by half, blended: no faster layout agrees with a dense reference on at least "
                  "99.5 % of pixels")


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Styles an output layer when QGIS adds it to the project.

    A raster gets the ``.qml`` the engine wrote beside it. A GeoPackage of
    polygons carries its style inside (the ``layer_styles`` table, see
    ``mobanet/raster/polygon_style.py``), which Processing does not read when
    it loads results: the layer's default style is loaded from there.
    """

    def __init__(self, qml: str = ""):
        super().__init__()
        self.qml = qml

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> None:
        if layer is None:
            return
        if self.qml:
            _, ok = layer.loadNamedStyle(self.qml) if os.path.isfile(self.qml) else ("", False)
        else:
            _, ok = layer.loadDefaultStyle()
        if not ok:
            feedback.pushWarning(f"Could not apply the class colours to the layer '{layer.name()}' "
                                 f"({self.qml or layer.source()}).")
        layer.triggerRepaint()


# QGIS does not own Python post-processors: keep them alive until QGIS has used them.
_POST_PROCESSORS: list[StyleOnLoad] = []


def style_on_load(output: str, context: QgsProcessingContext, qml: str = "") -> None:
    """Style ``output`` when QGIS loads it into the project (see `StyleOnLoad`)."""
    if not output or not context.willLoadLayerOnCompletion(output):
        return
    processor = StyleOnLoad(qml)
    _POST_PROCESSORS.append(processor)
    del _POST_PROCESSORS[:-32]
    context.layerToLoadOnCompletionDetails(output).setPostProcessor(processor)


class SegmentAlgorithm(MobanetAlgorithm):
    COMMAND = "segment"

    def displayName(self) -> str:
        return "Segment (optical + DSM)"

    def shortDescription(self) -> str:
        return ("Classify every pixel of an optical image into land-cover classes, helped by a surface model (DSM) "
                "when there is one.")

    def tags(self) -> list[str]:
        return ["segmentation", "classification", "land cover", "dsm", "deep learning", "mobanet", "dinov2"]

    def summary(self) -> str:
        return ("Classifies every pixel of an optical image (three bands) into land-cover classes with a MoBaNet "
                "model, using a digital surface model (DSM, heights in metres) as a second input. The DSM may have "
                "another CRS, pixel size or extent: it is resampled onto the optical grid. Without a DSM the model "
                "predicts from the optical image alone; the log says how much accuracy that costs this model. The "
                "result is a single-band GeoTIFF on the optical grid with the model's class colours and names; it "
                "loads styled. The engine runs as a separate process; Cancel stops it and leaves no output behind.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.add(QgsProcessingParameterRasterLayer("OPTICAL", "Optical image"),
                 "Aerial or satellite image with (at least) three bands, e.g. an orthophoto (RGB or IRRG, "
                 "as the model was trained). Any layer QGIS reads; non-file layers are exported first.",
                 flag="--optical")
        self.add(QgsProcessingParameterRasterLayer("DSM", "Surface model (DSM)", optional=True),
                 "Digital surface model: heights in metres, one band, covering the optical image. It is "
                 "resampled onto the optical image's grid. The dialog starts on a one-band floating-point "
                 "layer of the project, never on the optical image. Optional: without it the model predicts from "
                 "the optical image alone, which costs accuracy (the log gives this model's numbers).", flag="--dsm")
        self.add(QgsProcessingParameterEnum(
            "DSM_GAPS", "Pixels without DSM data", options=list(DSM_GAP_LABELS), defaultValue=0, optional=True),
            "Where the DSM has nodata or does not cover the optical image: predict those pixels from the optical "
            "image alone (the default: in the ablation benchmark such pixels score mIoU 51.9, against 77.6 with "
            "the DSM there), or leave them as nodata (255), without a class. Used "
            "only with a DSM. Optional so that models and scripts made before it existed keep working.",
            flag="--dsm-gaps", choices=DSM_GAP_MODES)
        optical = start_on(self.parameterDefinition("OPTICAL"), looks_like_optical)
        start_on(self.parameterDefinition("DSM"), looks_like_dsm, taken=[optical])
        self.add(QgsProcessingParameterFile(
            "MODEL", "Model file", extension="safetensors", optional=True),
            "A MoBaNet model file (.safetensors), e.g. one made with 'Train'. Leave empty to use the embedded "
            "default model (a small demonstration model trained on synthetic scenes).", flag="--model")
        self.add(QgsProcessingParameterFile(
            "WEIGHTS", "Backbone weights file", optional=True,
            fileFilter="Backbone weights (*.pth *.safetensors);;All files (*.*)"),
            "Only for model files that hold just the trained adapter of a DINOv2 backbone, on a machine without "
            "internet access: the backbone's weights (original DINOv2 .pth or timm .safetensors).",
            flag="--weights", advanced=True)
        self.add(QgsProcessingParameterBand(
            "BANDS", "Optical bands", parentLayerParameterName="OPTICAL", optional=True, allowMultiple=True),
            "The three bands of the optical image to use, in the model's band order. Leave empty for bands 1, 2, 3.",
            flag="--bands")
        self.add(QgsProcessingParameterExtent("EXTENT", "Processing extent", optional=True),
                 "Only segment this part of the optical image. Leave empty for the whole image.", flag="--extent")
        self.add(QgsProcessingParameterFeatureSource(
            "MASK", "Mask polygons", [ProcessingSourceType.VectorPolygon], optional=True),
            "Only segment inside these polygons; pixels outside are set to nodata (255).", flag="--mask")
        self.add(QgsProcessingParameterEnum("DEVICE", "Device", options=list(DEVICE_LABELS), defaultValue=0),
                 "Where the model runs: a CUDA GPU when one is available, or the CPU.", flag="--device",
                 choices=DEVICES, advanced=True)
        self.add(QgsProcessingParameterNumber(
            "BATCH_SIZE", "Batch size", ProcessingNumberParameterType.Integer, defaultValue=4, minValue=1,
            maxValue=256),
            "Windows processed at once. Larger is faster on a GPU but needs more memory.", flag="--batch-size",
            advanced=True)
        self.add(QgsProcessingParameterNumber(
            "OVERLAP", "Window overlap", ProcessingNumberParameterType.Double, optional=True, minValue=0.0,
            maxValue=0.9),
            "Blend overlapping windows: the fraction by which neighbouring windows overlap (0 to 0.9), each "
            "window counting most at its centre. More overlap is smoother at window edges and takes longer. Set "
            f"this or Context margin, not both; leave both empty for the default ({DEFAULT_TILING}).",
            flag="--overlap", advanced=True)
        self.add(QgsProcessingParameterNumber(
            "MARGIN", "Context margin (pixels)", ProcessingNumberParameterType.Integer, optional=True, minValue=0),
            "Keep only the centre of each window: this many pixels on every side serve as context and are "
            "dropped, and the centres tile the image, so each pixel is predicted once. Set this or Window "
            f"overlap, not both; leave both empty for the default ({DEFAULT_TILING}).", flag="--margin",
            advanced=True)
        self.add(QgsProcessingParameterRasterDestination("OUTPUT", "Land cover"),
                 "The classified GeoTIFF: one byte per pixel (class index, 255 = nodata), with colours and "
                 "class names; a .qml style is written beside it.", flag="--output")
        self.add(QgsProcessingParameterRasterDestination(
            "CONFIDENCE", "Confidence", optional=True, createByDefault=False),
            "Optional GeoTIFF with the model's confidence (probability of the chosen class, 0 to 1) per pixel.",
            flag="--confidence")
        self.add(QgsProcessingParameterVectorDestination(
            "VECTOR", "Land-cover polygons", ProcessingSourceType.VectorPolygon, optional=True,
            createByDefault=False),
            "Optional GeoPackage with the classes as polygons (one feature per patch, with class name and area), "
            "styled in the class colours.", flag="--polygons")

        self.add(QgsProcessingParameterNumber(
            "MIN_AREA", "Smallest polygon area", ProcessingNumberParameterType.Double, defaultValue=0.0,
            minValue=0.0),
            "Land-cover polygons smaller than this area (square units of the optical CRS, e.g. m²) are dropped. "
            "Used only when land-cover polygons are written.", flag="--min-area", advanced=True)
        self.add(QgsProcessingParameterString("RAY", "Ray cluster address", optional=True),
                 "Leave empty to segment in one process. 'local' spreads the work over Ray workers on this "
                 "machine; HOST:PORT (as printed by `ray start --head`) sends it to that Ray cluster, whose nodes "
                 "must see the input files and the output folder. The result is the same; needs Ray in the engine's "
                 "Python (pip install 'mobanet[ray]').", flag="--ray", advanced=True)

    def checkParameterValues(self, parameters: dict[str, Any], context: QgsProcessingContext) -> tuple[bool, str]:
        if _is_set(parameters, "OVERLAP") and _is_set(parameters, "MARGIN"):
            return False, (f"{self.field('OVERLAP')} and {self.field('MARGIN')} are two ways to lay out the "
                           "windows; set only one of them, or neither for the default.")
        return super().checkParameterValues(parameters, context)

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback) -> dict[str, Any]:
        optical_layer = self.parameterAsRasterLayer(parameters, "OPTICAL", context)
        dsm_layer = self.parameterAsRasterLayer(parameters, "DSM", context)
        if optical_layer is None or (dsm_layer is None and parameters.get("DSM") not in (None, "")):
            name = "OPTICAL" if optical_layer is None else "DSM"  # a value QGIS accepted but cannot load
            raise QgsProcessingException(f"{self.field(name)}: the layer {parameters.get(name)!s} cannot be "
                                         "loaded as a raster; choose another layer or file.")
        outputs = {name: self.requested_output(parameters, name, context)
                   for name in ("OUTPUT", "CONFIDENCE", "VECTOR")}
        # a layer without its own grid (WMS) is rendered at the other layer's pixel size
        dsm_pixel = native_pixel_size(dsm_layer) if dsm_layer is not None else None
        values = {
            "OPTICAL": raster_layer_file(optical_layer, self.field("OPTICAL"), context, feedback, dsm_pixel),
            "DSM": raster_layer_file(dsm_layer, self.field("DSM"), context, feedback,
                                     native_pixel_size(optical_layer)) if dsm_layer is not None else "",
            "EXTENT": self._extent(parameters, context, optical_layer),
            "MASK": self.parameterAsCompatibleSourceLayerPath(
                parameters, "MASK", context, ["gpkg", "shp", "geojson"], "gpkg", feedback)
            if parameters.get("MASK") is not None else "",
            **outputs,
        }
        if not outputs["VECTOR"]:
            values["MIN_AREA"] = None  # an area only matters to polygons
        if dsm_layer is None:
            values["DSM_GAPS"] = None  # gaps only matter to a given DSM
        arguments = self.engine_arguments(parameters, context, feedback, values)

        result = self.run_engine(arguments, feedback, [path for path in outputs.values() if path])
        _report_class_shares(result, feedback)
        style_on_load(outputs["OUTPUT"], context, str(result.get("style") or
                                                      Path(outputs["OUTPUT"]).with_suffix(STYLE_SUFFIX)))
        style_on_load(outputs["VECTOR"], context)
        for name, path in outputs.items():
            self.name_loaded_layer(parameters, name, path, context, optical_layer)
        return {name: path for name, path in outputs.items() if path}

    def _extent(self, parameters: dict[str, Any], context: QgsProcessingContext, optical: QgsMapLayer) -> str:
        """The processing extent in the optical layer's CRS as xmin,ymin,xmax,ymax ('' for the whole image)."""
        if parameters.get("EXTENT") is None:
            return ""
        extent = self.parameterAsExtent(parameters, "EXTENT", context, optical.crs())
        if extent.isNull() or extent.isEmpty():
            return ""
        return ",".join(repr(v) for v in (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()))


def _is_set(parameters: dict[str, Any], name: str) -> bool:
    """An optional parameter the user filled in (unset ones are missing, None or empty in batch mode)."""
    return parameters.get(name) not in (None, "")


def _report_class_shares(result: dict[str, Any], feedback: QgsProcessingFeedback) -> None:
    shares = result.get("class_shares")
    if isinstance(shares, dict) and shares:
        feedback.pushInfo("Class shares: " + ", ".join(
            f"{name} {100.0 * float(share):.1f} %" for name, share in shares.items()
            if isinstance(share, (int, float))))
