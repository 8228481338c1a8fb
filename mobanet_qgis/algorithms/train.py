"""`mobanet:train`: fit a MoBaNet model on scenes of optical image, DSM and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from mobanet_qgis.algorithms.base import DEVICE_LABELS, MobanetAlgorithm, layer_file
from mobanet_qgis.compat import ProcessingNumberParameterType, ProcessingSourceType

BACKBONES = (
    "dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14",
    "vit_small_patch14_reg4_dinov2.lvd142m", "vit_base_patch14_reg4_dinov2.lvd142m",
    "vit_large_patch14_reg4_dinov2.lvd142m", "vit_giant_patch14_reg4_dinov2.lvd142m",
    "tiny",
)
BACKBONE_LABELS = (
    "DINOv2 ViT-S/14 (22 M parameters)", "DINOv2 ViT-B/14 (87 M)", "DINOv2 ViT-L/14 (304 M, the paper's)",
    "DINOv2 ViT-g/14 (1.1 G)", "DINOv2 ViT-S/14 with registers", "DINOv2 ViT-B/14 with registers",
    "DINOv2 ViT-L/14 with registers", "DINOv2 ViT-g/14 with registers",
    "tiny (small random ViT, for tests and demonstrations only)",
)
MCRM_MODES = ("local", "full", "none")
MCRM_LABELS = ("Local: hide a random rectangle of one modality (authors' default)",
               "Full: hide one modality entirely (as in the paper)", "None: no masking")
LAST_SUFFIX = ".last.safetensors"  # the engine writes the last epoch's model beside the best one
SCENE_INPUTS = ("OPTICAL", "DSM", "LABELS")
VALIDATION_INPUTS = ("VAL_OPTICAL", "VAL_DSM", "VAL_LABELS")


class TrainAlgorithm(MobanetAlgorithm):
    COMMAND = "train"

    def displayName(self) -> str:
        return "Train a model"

    def shortDescription(self) -> str:
        return "Fine-tune MoBaNet on your own optical images, DSMs and labels; writes a model file."

    def tags(self) -> list[str]:
        return ["training", "fine-tuning", "segmentation", "dsm", "deep learning", "mobanet", "dinov2"]

    def summary(self) -> str:
        return ("Trains a MoBaNet model (a frozen DINOv2 backbone with small trainable adapters and fusion) on one "
                "or more scenes. A scene is the k-th optical layer, the k-th DSM layer and the k-th label layer, "
                "so the three lists must have the same length and order. Labels are class-index rasters "
                "(255 = ignore), ISPRS colour rasters, or polygon layers with a class field. Progress is shown per "
                "iteration and validation metrics per epoch in the log. Training a large backbone wants a GPU.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.add(QgsProcessingParameterMultipleLayers("OPTICAL", "Optical images", ProcessingSourceType.Raster),
                 "One optical image (three bands) per training scene, in scene order.")
        self.add(QgsProcessingParameterMultipleLayers("DSM", "Surface models (DSM)", ProcessingSourceType.Raster),
                 "One DSM (heights in metres) per training scene, in the same order as the optical images.")
        self.add(QgsProcessingParameterMultipleLayers("LABELS", "Labels", ProcessingSourceType.MapLayer),
                 "One label layer per training scene, in the same order: a class-index raster (0..N-1, "
                 "255 = ignore), an ISPRS colour-coded RGB raster, or a polygon layer with a class field.")
        self.add(QgsProcessingParameterString("CLASS_FIELD", "Class field of label polygons", optional=True),
                 "For polygon labels: the attribute holding the class (an index or a class name). Leave empty "
                 "for the engine's default field name.")
        self.add(QgsProcessingParameterMultipleLayers(
            "VAL_OPTICAL", "Validation optical images", ProcessingSourceType.Raster, optional=True),
            "Optional validation scenes (optical), used to pick the best epoch. Without them a block of each "
            "training scene is held out.")
        self.add(QgsProcessingParameterMultipleLayers(
            "VAL_DSM", "Validation surface models", ProcessingSourceType.Raster, optional=True),
            "DSMs of the validation scenes, in the same order as the validation optical images.")
        self.add(QgsProcessingParameterMultipleLayers(
            "VAL_LABELS", "Validation labels", ProcessingSourceType.MapLayer, optional=True),
            "Labels of the validation scenes (rasters or polygons), in the same order.")
        self.add(QgsProcessingParameterEnum(
            "BACKBONE", "Backbone", options=list(BACKBONE_LABELS), defaultValue=BACKBONES.index("dinov2_vitl14")),
            "The frozen vision foundation model. Larger is more accurate and slower. Its pretrained weights are "
            "downloaded by timm when online; offline, give the weights file below.")
        self.add(QgsProcessingParameterFile(
            "WEIGHTS", "Backbone weights file", optional=True,
            fileFilter="Backbone weights (*.pth *.safetensors);;All files (*.*)"),
            "The backbone's pretrained weights for offline machines: the original DINOv2 .pth (e.g. "
            "dinov2_vitl14_pretrain.pth) or a timm .safetensors. Leave empty to let timm download them.")
        self.add(QgsProcessingParameterNumber(
            "EPOCHS", "Epochs", ProcessingNumberParameterType.Integer, defaultValue=50, minValue=1),
            "Passes of training; the model is validated after each.")
        self.add(QgsProcessingParameterNumber(
            "ITERATIONS", "Iterations per epoch", ProcessingNumberParameterType.Integer, defaultValue=1000,
            minValue=1),
            "Batches of random windows per epoch.")
        self.add(QgsProcessingParameterNumber(
            "BATCH_SIZE", "Batch size", ProcessingNumberParameterType.Integer, defaultValue=24, minValue=1),
            "Windows per training step. Lower it when memory runs out.", advanced=True)
        self.add(QgsProcessingParameterNumber(
            "WINDOW", "Window size", ProcessingNumberParameterType.Integer, defaultValue=266, minValue=28,
            maxValue=2048),
            "Side in pixels of the square windows the model is trained on; validation and later segmentation "
            "use the same windows (the size is stored in the model file). Rounded up to whole 14 px patches: "
            "266 is 19 patches.",
            advanced=True)
        self.add(QgsProcessingParameterNumber(
            "LR", "Learning rate", ProcessingNumberParameterType.Double, defaultValue=2e-4, minValue=0.0),
            "Peak learning rate of AdamW (after warm-up; then cosine decay).", advanced=True)
        self.add(QgsProcessingParameterEnum("MCRM", "Modality masking (MCRM)", options=list(MCRM_LABELS),
                                            defaultValue=0),
                 "Modality-conditional random masking: a quarter of each batch loses part (local) or all (full) "
                 "of one input, so the model learns to use both.", advanced=True)
        self.add(QgsProcessingParameterEnum("DEVICE", "Device", options=list(DEVICE_LABELS), defaultValue=0),
                 "Where training runs: a CUDA GPU when one is available, or the CPU.", advanced=True)
        self.add(QgsProcessingParameterNumber(
            "SEED", "Random seed", ProcessingNumberParameterType.Integer, defaultValue=0, minValue=0),
            "Seed of window sampling, masking and initialisation, for repeatable runs.", advanced=True)
        self.add(QgsProcessingParameterFileDestination(
            "OUTPUT", "Model file", fileFilter="MoBaNet model (*.safetensors)"),
            "The trained model (.safetensors, the best epoch by validation mIoU); logs are written beside it.")
        self.addOutput(QgsProcessingOutputFile("OUTPUT_LAST", "Model file of the last epoch"))

    def _scene_files(self, parameters: dict[str, Any], names: tuple[str, ...], context: QgsProcessingContext,
                     feedback: QgsProcessingFeedback) -> list[list[str]]:
        """Files of each input list; the lists must be equally long (one entry per scene)."""
        lists = [self.parameterAsLayerList(parameters, name, context) for name in names]
        counts = [len(layers) for layers in lists]
        if len(set(counts)) != 1:
            described = ", ".join(f"{name} {count}" for name, count in zip(names, counts, strict=True))
            raise QgsProcessingException(
                f"Each scene needs one layer in each of {', '.join(names)}; got {described}. "
                "Give the same number of layers, in the same order.")
        return [[layer_file(layer, f"{name}_{k + 1}", context, feedback) for k, layer in enumerate(layers)]
                for name, layers in zip(names, lists, strict=True)]

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback) -> dict[str, Any]:
        optical, dsm, labels = self._scene_files(parameters, SCENE_INPUTS, context, feedback)
        if not optical:
            raise QgsProcessingException("Give at least one training scene (optical, DSM and labels).")
        output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        arguments: list[str] = []
        for scene in zip(optical, dsm, labels, strict=True):
            arguments += ["--optical", scene[0], "--dsm", scene[1], "--labels", scene[2]]
        val_optical, val_dsm, val_labels = self._scene_files(parameters, VALIDATION_INPUTS, context, feedback)
        for scene in zip(val_optical, val_dsm, val_labels, strict=True):
            arguments += ["--val-optical", scene[0], "--val-dsm", scene[1], "--val-labels", scene[2]]
        class_field = self.parameterAsString(parameters, "CLASS_FIELD", context).strip()
        if class_field:
            arguments += ["--class-field", class_field]
        backbone = BACKBONES[self.parameterAsEnum(parameters, "BACKBONE", context)]
        weights = self.parameterAsFile(parameters, "WEIGHTS", context)
        if weights:
            arguments += ["--weights", weights]
        elif backbone != "tiny":
            arguments += ["--pretrained"]  # timm downloads the DINOv2 weights
        arguments += [
            "--output", output,
            "--backbone", backbone,
            "--epochs", str(self.parameterAsInt(parameters, "EPOCHS", context)),
            "--iterations", str(self.parameterAsInt(parameters, "ITERATIONS", context)),
            "--batch-size", str(self.parameterAsInt(parameters, "BATCH_SIZE", context)),
            "--window", str(self.parameterAsInt(parameters, "WINDOW", context)),
            "--lr", repr(self.parameterAsDouble(parameters, "LR", context)),
            "--mcrm", MCRM_MODES[self.parameterAsEnum(parameters, "MCRM", context)],
            "--seed", str(self.parameterAsInt(parameters, "SEED", context)),
            "--device", self.device_argument(parameters, "DEVICE", context),
        ]
        self.run_engine(arguments, feedback, [output])
        results: dict[str, Any] = {"OUTPUT": output}
        last = Path(output).with_name(Path(output).stem + LAST_SUFFIX)
        if last.is_file():
            results["OUTPUT_LAST"] = str(last)
        return results
