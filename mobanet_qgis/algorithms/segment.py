"""`mobanet:segment`: land-cover classes from an optical layer and a DSM layer."""

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

from mobanet_qgis.algorithms.base import DEVICE_LABELS, MobanetAlgorithm, native_pixel_size, raster_layer_file
from mobanet_qgis.compat import ProcessingNumberParameterType, ProcessingSourceType

STYLE_SUFFIX = ".qml"


class StyleFromQml(QgsProcessingLayerPostProcessorInterface):
    """Loads the ``.qml`` that the engine wrote beside a raster onto the layer QGIS adds to the project."""

    def __init__(self, qml: str):
        super().__init__()
        self.qml = qml

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> None:
        if layer is not None and os.path.isfile(self.qml):
            _, ok = layer.loadNamedStyle(self.qml)
            if not ok:
                feedback.pushWarning(f"Could not apply the style {self.qml}")
            layer.triggerRepaint()


# QGIS does not own Python post-processors: keep them alive until QGIS has used them.
_POST_PROCESSORS: list[StyleFromQml] = []


def style_on_load(output: str, qml: str, context: QgsProcessingContext) -> None:
    """Style the output with the engine's ``.qml`` when QGIS loads it into the project."""
    if not context.willLoadLayerOnCompletion(output):
        return
    processor = StyleFromQml(qml)
    _POST_PROCESSORS.append(processor)
    del _POST_PROCESSORS[:-32]
    context.layerToLoadOnCompletionDetails(output).setPostProcessor(processor)


class SegmentAlgorithm(MobanetAlgorithm):
    COMMAND = "segment"

    def displayName(self) -> str:
        return "Segment (optical + DSM)"

    def shortDescription(self) -> str:
        return "Classify every pixel of an optical image into land-cover classes, helped by a surface model (DSM)."

    def tags(self) -> list[str]:
        return ["segmentation", "classification", "land cover", "dsm", "deep learning", "mobanet", "dinov2"]

    def summary(self) -> str:
        return ("Classifies every pixel of an optical image (three bands) into land-cover classes with a MoBaNet "
                "model, using a digital surface model (DSM, heights in metres) as a second input. The DSM may have "
                "another CRS, pixel size or extent: it is resampled onto the optical grid. The result is a "
                "single-band GeoTIFF on the optical grid with the model's class colours and names; it loads "
                "styled. The engine runs as a separate process; Cancel stops it and leaves no output behind.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.add(QgsProcessingParameterRasterLayer("OPTICAL", "Optical image"),
                 "Aerial or satellite image with (at least) three bands, e.g. an orthophoto (RGB or IRRG, "
                 "as the model was trained). Any layer QGIS reads; non-file layers are exported first.")
        self.add(QgsProcessingParameterRasterLayer("DSM", "Surface model (DSM)"),
                 "Digital surface model: heights in metres, one band, covering the optical image. It is "
                 "resampled onto the optical image's grid.")
        self.add(QgsProcessingParameterFile(
            "MODEL", "Model file", extension="safetensors", optional=True),
            "A MoBaNet model file (.safetensors), e.g. one made with 'Train'. Leave empty to use the embedded "
            "default model (a small demonstration model trained on synthetic scenes).")
        self.add(QgsProcessingParameterFile(
            "WEIGHTS", "Backbone weights file", optional=True,
            fileFilter="Backbone weights (*.pth *.safetensors);;All files (*.*)"),
            "Only for model files that hold just the trained adapter of a DINOv2 backbone, on a machine without "
            "internet access: the backbone's weights (original DINOv2 .pth or timm .safetensors).", advanced=True)
        self.add(QgsProcessingParameterBand(
            "BANDS", "Optical bands", parentLayerParameterName="OPTICAL", optional=True, allowMultiple=True),
            "The three bands of the optical image to use, in the model's band order. Leave empty for bands 1, 2, 3.")
        self.add(QgsProcessingParameterExtent("EXTENT", "Processing extent", optional=True),
                 "Only segment this part of the optical image. Leave empty for the whole image.")
        self.add(QgsProcessingParameterFeatureSource(
            "MASK", "Mask polygons", [ProcessingSourceType.VectorPolygon], optional=True),
            "Only segment inside these polygons; pixels outside are set to nodata (255).")
        self.add(QgsProcessingParameterEnum("DEVICE", "Device", options=list(DEVICE_LABELS), defaultValue=0),
                 "Where the model runs: a CUDA GPU when one is available, or the CPU.", advanced=True)
        self.add(QgsProcessingParameterNumber(
            "BATCH_SIZE", "Batch size", ProcessingNumberParameterType.Integer, defaultValue=4, minValue=1,
            maxValue=256),
            "Windows processed at once. Larger is faster on a GPU but needs more memory.", advanced=True)
        self.add(QgsProcessingParameterNumber(
            "OVERLAP", "Window overlap", ProcessingNumberParameterType.Double, defaultValue=0.5, minValue=0.0,
            maxValue=0.9),
            "Fraction by which neighbouring windows overlap (0 to 0.9). More overlap gives smoother results "
            "at window edges and takes longer.", advanced=True)
        self.add(QgsProcessingParameterRasterDestination("OUTPUT", "Land cover"),
                 "The classified GeoTIFF: one byte per pixel (class index, 255 = nodata), with colours and "
                 "class names; a .qml style is written beside it.")
        self.add(QgsProcessingParameterRasterDestination(
            "CONFIDENCE", "Confidence", optional=True, createByDefault=False),
            "Optional GeoTIFF with the model's confidence (probability of the chosen class, 0 to 1) per pixel.")
        self.add(QgsProcessingParameterVectorDestination(
            "VECTOR", "Land-cover polygons", ProcessingSourceType.VectorPolygon, optional=True,
            createByDefault=False),
            "Optional GeoPackage with the classes as polygons (one feature per patch, with class name and area).")

        self.add(QgsProcessingParameterNumber(
            "MIN_AREA", "Smallest polygon area", ProcessingNumberParameterType.Double, defaultValue=0.0,
            minValue=0.0),
            "Land-cover polygons smaller than this area (square units of the optical CRS, e.g. m²) are dropped. "
            "Used only when land-cover polygons are written.", advanced=True)
        self.add(QgsProcessingParameterString("RAY", "Ray cluster address", optional=True),
                 "Leave empty to segment in one process. 'local' spreads the work over Ray workers on this "
                 "machine; HOST:PORT (as printed by `ray start --head`) sends it to that Ray cluster, whose nodes "
                 "must see the input files and the output folder. The result is the same; needs Ray in the engine's "
                 "Python (pip install 'mobanet[ray]').", advanced=True)

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback) -> dict[str, Any]:
        optical_layer = self.parameterAsRasterLayer(parameters, "OPTICAL", context)
        if optical_layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, "OPTICAL"))
        dsm_layer = self.parameterAsRasterLayer(parameters, "DSM", context)
        if dsm_layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, "DSM"))
        # A layer without its own grid (WMS) is rendered at the other layer's pixel size.
        optical = raster_layer_file(optical_layer, "OPTICAL", context, feedback, native_pixel_size(dsm_layer))
        dsm = raster_layer_file(dsm_layer, "DSM", context, feedback, native_pixel_size(optical_layer))
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        arguments = ["--optical", optical, "--dsm", dsm, "--output", output]
        outputs = [output]

        model = self.parameterAsFile(parameters, "MODEL", context)
        if model:
            arguments += ["--model", model]
        weights = self.parameterAsFile(parameters, "WEIGHTS", context)
        if weights:
            arguments += ["--weights", weights]
        bands = self.parameterAsInts(parameters, "BANDS", context)
        if bands:
            arguments += ["--bands", ",".join(str(b) for b in bands)]
        if parameters.get("EXTENT") is not None:
            extent = self.parameterAsExtent(parameters, "EXTENT", context, optical_layer.crs())
            if not extent.isNull() and not extent.isEmpty():
                arguments += ["--extent", ",".join(repr(v) for v in (
                    extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()))]
        if parameters.get("MASK") is not None:
            mask = self.parameterAsCompatibleSourceLayerPath(
                parameters, "MASK", context, ["gpkg", "shp", "geojson"], "gpkg", feedback)
            if mask:
                arguments += ["--mask", mask]
        arguments += ["--device", self.device_argument(parameters, "DEVICE", context),
                      "--batch-size", str(self.parameterAsInt(parameters, "BATCH_SIZE", context)),
                      "--overlap", repr(self.parameterAsDouble(parameters, "OVERLAP", context))]
        confidence = self.parameterAsOutputLayer(parameters, "CONFIDENCE", context) \
            if parameters.get("CONFIDENCE") is not None else ""
        if confidence:
            arguments += ["--confidence", confidence]
            outputs.append(confidence)
        polygons = self.parameterAsOutputLayer(parameters, "VECTOR", context) \
            if parameters.get("VECTOR") is not None else ""
        if polygons:
            arguments += ["--polygons", polygons]
            outputs.append(polygons)
            min_area = self.parameterAsDouble(parameters, "MIN_AREA", context)
            if min_area > 0:
                arguments += ["--min-area", repr(min_area)]

        ray_address = self.parameterAsString(parameters, "RAY", context).strip()
        if ray_address:
            arguments += ["--ray", ray_address]

        result = self.run_engine(arguments, feedback, outputs)
        _report_class_shares(result, feedback)
        style_on_load(output, str(result.get("style") or Path(output).with_suffix(STYLE_SUFFIX)), context)
        results: dict[str, Any] = {"OUTPUT": output}
        if confidence:
            results["CONFIDENCE"] = confidence
        if polygons:
            results["VECTOR"] = polygons
        return results


def _report_class_shares(result: dict[str, Any], feedback: QgsProcessingFeedback) -> None:
    shares = result.get("class_shares")
    if isinstance(shares, dict) and shares:
        feedback.pushInfo("Class shares: " + ", ".join(
            f"{name} {100.0 * float(share):.1f} %" for name, share in shares.items()
            if isinstance(share, (int, float))))
