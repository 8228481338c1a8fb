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
                 "The classification to score: one band of class indices (255 = nodata).")
        self.add(QgsProcessingParameterRasterLayer("REFERENCE", "Reference labels"),
                 "The ground truth: a class-index raster (255 = ignore) or an ISPRS colour-coded RGB raster, "
                 "covering the classified raster.")
        self.add(QgsProcessingParameterBoolean("ERODED", "Ignore class borders (ISPRS eroded reference)",
                                               defaultValue=False),
                 "Ignore reference pixels within 3 pixels of a class border, as the ISPRS 'noBoundary' scores do.")
        self.add(QgsProcessingParameterFileDestination(
            "OUTPUT_HTML", "Report", fileFilter="HTML files (*.html)", optional=True),
            "An HTML report with the scores, per-class table and confusion matrix.")
        self.add(QgsProcessingParameterFileDestination(
            "OUTPUT_JSON", "Scores as JSON", fileFilter="JSON files (*.json)", optional=True,
            createByDefault=False),
            "Optional JSON file with every score (overall_accuracy, miou, mf1, miou_all, kappa, per_class, "
            "confusion_matrix).")
        for name, (_, description) in SCORES.items():
            self.addOutput(QgsProcessingOutputNumber(name, description))

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback) -> dict[str, Any]:
        prediction = self.raster_argument(parameters, "PREDICTION", context, feedback)
        reference = self.raster_argument(parameters, "REFERENCE", context, feedback)
        arguments = ["--prediction", prediction, "--reference", reference]
        if self.parameterAsBoolean(parameters, "ERODED", context):
            arguments.append("--eroded")
        outputs = []
        report = self.parameterAsFileOutput(parameters, "OUTPUT_HTML", context) \
            if parameters.get("OUTPUT_HTML") is not None else ""
        if report:
            arguments += ["--report", report]
            outputs.append(report)
        scores_json = self.parameterAsFileOutput(parameters, "OUTPUT_JSON", context) \
            if parameters.get("OUTPUT_JSON") is not None else ""
        if scores_json:
            arguments += ["--json", scores_json]
            outputs.append(scores_json)

        result = self.run_engine(arguments, feedback, outputs)
        results: dict[str, Any] = {}
        for name, (key, description) in SCORES.items():
            value = result.get(key)
            results[name] = float(value) if isinstance(value, (int, float)) else None
            if results[name] is not None:
                feedback.pushInfo(f"{description}: {results[name]:.4f}")
        if report:
            results["OUTPUT_HTML"] = report
        if scores_json:
            results["OUTPUT_JSON"] = scores_json
        return results
