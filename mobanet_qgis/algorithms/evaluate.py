"""`mobanet:evaluate`: accuracy of a classified raster against a reference (ISPRS scores)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from mobanet_qgis.algorithms.base import MobanetAlgorithm
from mobanet_qgis.algorithms.layer_choice import looks_like_classes, start_on

# Processing output name -> key of the engine's evaluate result.
SCORES = {
    "OA": ("overall_accuracy", "Overall accuracy"),
    "MF1": ("mf1", "Mean F1 (five classes without clutter)"),
    "MIOU": ("miou", "Mean IoU (five classes without clutter)"),
    "MIOU_ALL": ("miou_all", "Mean IoU (all classes)"),
    "KAPPA": ("kappa", "Cohen's kappa"),
}


class EvaluateAlgorithm(MobanetAlgorithm):
    COMMAND = "evaluate"

    def displayName(self) -> str:
        return "Evaluate a classification"

    def shortDescription(self) -> str:
        return "Overall accuracy, mean F1 and mean IoU of a classified raster against reference labels."

    def tags(self) -> list[str]:
        return ["accuracy", "evaluation", "confusion matrix", "iou", "f1", "kappa", "mobanet"]

    def summary(self) -> str:
        return ("Compares a classified raster (e.g. the output of 'Segment') with reference labels on the same "
                "classes, pixel by pixel (reference pixels 255 are ignored). Reports the ISPRS scores: overall "
                "accuracy, per-class F1 and IoU, their means over the five classes without clutter and over all "
                "classes, kappa and the confusion matrix. OA, MF1 and MIOU are also outputs, usable in the model "
                "designer. Fractions are in [0, 1].")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.add(QgsProcessingParameterRasterLayer("PREDICTION", "Classified raster"),
                 "The classification to score: one band of class indices (255 = nodata).", flag="--prediction")
        self.add(QgsProcessingParameterRasterLayer("REFERENCE", "Reference labels"),
                 "The ground truth: a class-index raster (255 = ignore) or an ISPRS colour-coded RGB raster, "
                 "covering the classified raster. The dialog never starts on the classified raster itself.",
                 flag="--reference")
        prediction = start_on(self.parameterDefinition("PREDICTION"), looks_like_classes)
        start_on(self.parameterDefinition("REFERENCE"), looks_like_classes, taken=[prediction])
        self.add(QgsProcessingParameterBoolean("ERODED", "Ignore class borders (ISPRS eroded reference)",
                                               defaultValue=False),
                 "Ignore reference pixels within 3 pixels of a class border, as the ISPRS 'noBoundary' scores do.",
                 flag="--eroded")
        self.add(QgsProcessingParameterFileDestination(
            "OUTPUT_HTML", "Report", fileFilter="HTML files (*.html)", optional=True),
            "An HTML report with the scores, per-class table and confusion matrix.", flag="--report")
        self.add(QgsProcessingParameterFileDestination(
            "OUTPUT_JSON", "Scores as JSON", fileFilter="JSON files (*.json)", optional=True,
            createByDefault=False),
            "Optional JSON file with every score (overall_accuracy, miou, mf1, miou_all, kappa, per_class, "
            "confusion_matrix).", flag="--json")
        for name, (_, description) in SCORES.items():
            self.addOutput(QgsProcessingOutputNumber(name, description))

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback) -> dict[str, Any]:
        files = {name: self.requested_output(parameters, name, context) for name in ("OUTPUT_HTML", "OUTPUT_JSON")}
        arguments = self.engine_arguments(parameters, context, feedback, files)
        result = self.run_engine(arguments, feedback, [path for path in files.values() if path])
        results: dict[str, Any] = {name: path for name, path in files.items() if path}
        for name, (key, description) in SCORES.items():
            value = result.get(key)
            results[name] = float(value) if isinstance(value, (int, float)) else None
            if results[name] is not None:
                feedback.pushInfo(f"{description}: {results[name]:.4f}")
        return results
