"""`mobanet:train`: fit a MoBaNet model on scenes of optical image, DSM and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from mobanet_qgis.algorithms.base import DEVICE_LABELS, DEVICES, MobanetAlgorithm
from mobanet_qgis.compat import ProcessingNumberParameterType, ProcessingSourceType

BACKBONES = (
    "dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14",
    "vit_small_patch14_reg4_dinov2.lvd142m", "vit_base_patch14_reg4_dinov2.lvd142m",
    "vit_large_patch14_reg4_dinov2.lvd142m", "vit_giant_patch14_reg4_dinov2.lvd142m",
    "tiny",
)
BACKBONE_LABELS = (
    "DINOv2 ViT-S/14 (22 M parameters)", "DINOv2 ViT-B/14 (87 M, recommended)",
    "DINOv2 ViT-L/14 (304 M, the paper's)",
    "DINOv2 ViT-g/14 (1.1 G)", "DINOv2 ViT-S/14 with registers", "DINOv2 ViT-B/14 with registers",
    "DINOv2 ViT-L/14 with registers", "DINOv2 ViT-g/14 with registers",
    "tiny (small random ViT, for tests and demonstrations only)",
)
# The engine's --mcrm choices; the defaults below are `mobanet train`'s (tests/plugin checks they agree).
MCRM_MODES = ("local", "full", "mix", "none")
MCRM_LABELS = ("Local: hide a random rectangle of one modality (authors' code)",
               "Full: hide one modality entirely (the paper)",
               "Mix: the whole modality or a rectangle, at random", "None: no masking")
DEFAULT_MCRM, DEFAULT_MCRM_RATIO, DEFAULT_AUX_LOSS, DEFAULT_FEATURE_PYRAMID = "mix", 0.5, True, True
# ViT-B/14: close to ViT-L's features for a third of its computation, memory and download
# (86.6 M vs 304.4 M parameters, 0.35 vs 1.2 GB of weights); the paper's ViT-L is one click away.
DEFAULT_BACKBONE = "dinov2_vitb14"
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
                 "One optical image (three bands) per training scene, in scene order.", flag="--optical")
        self.add(QgsProcessingParameterMultipleLayers("DSM", "Surface models (DSM)", ProcessingSourceType.Raster),
                 "One DSM (heights in metres) per training scene, in the same order as the optical images.",
                 flag="--dsm")
        self.add(QgsProcessingParameterMultipleLayers("LABELS", "Labels", ProcessingSourceType.MapLayer),
                 "One label layer per training scene, in the same order: a class-index raster (0..N-1, "
                 "255 = ignore), an ISPRS colour-coded RGB raster, or a polygon layer with a class field.",
                 flag="--labels")
        self.add(QgsProcessingParameterString("CLASS_FIELD", "Class field of label polygons", optional=True),
                 "For polygon labels: the attribute holding the class (an index or a class name). Leave empty "
                 "for the engine's default field name.", flag="--class-field")
        self.add(QgsProcessingParameterMultipleLayers(
            "VAL_OPTICAL", "Validation optical images", ProcessingSourceType.Raster, optional=True),
            "Optional validation scenes (optical), used to pick the best epoch. Without them a block of each "
            "training scene is held out.", flag="--val-optical")
        self.add(QgsProcessingParameterMultipleLayers(
            "VAL_DSM", "Validation surface models", ProcessingSourceType.Raster, optional=True),
            "DSMs of the validation scenes, in the same order as the validation optical images.", flag="--val-dsm")
        self.add(QgsProcessingParameterMultipleLayers(
            "VAL_LABELS", "Validation labels", ProcessingSourceType.MapLayer, optional=True),
            "Labels of the validation scenes (rasters or polygons), in the same order.", flag="--val-labels")
        self.add(QgsProcessingParameterEnum(
            "BACKBONE", "Backbone", options=list(BACKBONE_LABELS), defaultValue=BACKBONES.index(DEFAULT_BACKBONE)),
            "The frozen vision foundation model. Larger is more accurate and slower; ViT-B is the default: "
            "close to ViT-L's features at a third of its computation and memory, on a workstation GPU. Its "
            "pretrained weights are downloaded when online; offline, give the weights file below.",
            flag="--backbone", choices=BACKBONES)
        self.add(QgsProcessingParameterFile(
            "WEIGHTS", "Backbone weights file", optional=True,
            fileFilter="Backbone weights (*.pth *.safetensors);;All files (*.*)"),
            "The backbone's pretrained weights for offline machines: the original DINOv2 .pth (e.g. "
            "dinov2_vitb14_pretrain.pth) or a timm .safetensors. Leave empty to download them (or use the ones "
            "already downloaded on this machine).", flag="--weights")
        self.add(QgsProcessingParameterNumber(
            "EPOCHS", "Epochs", ProcessingNumberParameterType.Integer, defaultValue=50, minValue=1),
            "Passes of training; the model is validated after each.", flag="--epochs")
        self.add(QgsProcessingParameterNumber(
            "ITERATIONS", "Iterations per epoch", ProcessingNumberParameterType.Integer, defaultValue=1000,
            minValue=1),
            "Batches of random windows per epoch.", flag="--iterations")
        self.add(QgsProcessingParameterNumber(
            "BATCH_SIZE", "Batch size", ProcessingNumberParameterType.Integer, defaultValue=24, minValue=1),
            "Windows per training step. Lower it when memory runs out.", flag="--batch-size", advanced=True)
        self.add(QgsProcessingParameterNumber(
            "WINDOW", "Window size", ProcessingNumberParameterType.Integer, optional=True, minValue=28,
            maxValue=2048),
            "Side in pixels of the square windows the model is trained on, validated on and later segments with "
            "(stored in the model). Empty: 266 px, 19 x 19 DINOv2 patches, as the authors use.",
            flag="--window", advanced=True)
        self.add(QgsProcessingParameterNumber(
            "LR", "Learning rate", ProcessingNumberParameterType.Double, defaultValue=2e-4, minValue=0.0),
            "Peak learning rate of AdamW (after warm-up; then cosine decay).", flag="--lr", advanced=True)
        self.add(QgsProcessingParameterEnum("MCRM", "Modality masking (MCRM)", options=list(MCRM_LABELS),
                                            defaultValue=MCRM_MODES.index(DEFAULT_MCRM)),
                 "Modality-conditional random masking: part of each batch loses part (local) or all (full) of one "
                 "input, so the model learns to use both and keeps working when the DSM is missing. The default "
                 "was chosen by the ablation benchmark (benchmarks/results/ablation.md).", flag="--mcrm",
                 choices=MCRM_MODES, advanced=True)
        self.add(QgsProcessingParameterNumber(
            "MCRM_RATIO", "Masked share of each batch", ProcessingNumberParameterType.Double,
            defaultValue=DEFAULT_MCRM_RATIO, minValue=0.0, maxValue=1.0),
            "Share of the windows of each batch that lose one input (half the optical image, half the DSM).",
            flag="--mcrm-ratio", advanced=True)
        self.add(QgsProcessingParameterBoolean("AUX_LOSS", "Auxiliary hard-pixel loss", DEFAULT_AUX_LOSS),
                 "Train one extra head per input on the pixels the fused prediction still gets wrong (weight "
                 "0.01).", advanced=True)
        self.add(QgsProcessingParameterBoolean("FEATURE_PYRAMID", "Simple feature pyramid",
                                               DEFAULT_FEATURE_PYRAMID),
                 "Resample the four stages to 4x, 2x, 1x and 0.5x before the decoder (finer boundaries, a few "
                 "more parameters).", advanced=True)
        self.add(QgsProcessingParameterEnum("DEVICE", "Device", options=list(DEVICE_LABELS), defaultValue=0),
                 "Where training runs: a CUDA GPU when one is available, or the CPU.", flag="--device",
                 choices=DEVICES, advanced=True)
        self.add(QgsProcessingParameterNumber(
            "SEED", "Random seed", ProcessingNumberParameterType.Integer, defaultValue=0, minValue=0),
            "Seed of window sampling, masking and initialisation, for repeatable runs.", flag="--seed",
            advanced=True)
        self.add(QgsProcessingParameterFileDestination(
            "OUTPUT", "Model file", fileFilter="MoBaNet model (*.safetensors)"),
            "The trained model (.safetensors, the best epoch by validation mIoU); logs are written beside it.",
            flag="--output")
        self.addOutput(QgsProcessingOutputFile("OUTPUT_LAST", "Model file of the last epoch"))

    def _scene_files(self, parameters: dict[str, Any], names: tuple[str, ...], context: QgsProcessingContext,
                     feedback: QgsProcessingFeedback) -> dict[str, list[str]]:
        """Files of each input list; the lists must be equally long (one entry per scene)."""
        counts = {name: len(self.parameterAsLayerList(parameters, name, context)) for name in names}
        if len(set(counts.values())) != 1:
            described = ", ".join(f"{count} in {self.field(name)}" for name, count in counts.items())
            raise QgsProcessingException(
                f"Each scene needs one layer in each of {', '.join(self.field(name) for name in names)}; got "
                f"{described}. Give the same number of layers, in the same order.")
        return {name: self.layer_list_argument(parameters, name, context, feedback) for name in names}

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback) -> dict[str, Any]:
        scenes = self._scene_files(parameters, SCENE_INPUTS, context, feedback)
        if not scenes["OPTICAL"]:
            raise QgsProcessingException(
                f"Give at least one training scene: a layer in each of {', '.join(map(self.field, SCENE_INPUTS))}.")
        validation = self._scene_files(parameters, VALIDATION_INPUTS, context, feedback)
        output = self.requested_output(parameters, "OUTPUT", context)
        arguments = self.engine_arguments(parameters, context, feedback, {**scenes, **validation, "OUTPUT": output})
        backbone = BACKBONES[self.parameterAsEnum(parameters, "BACKBONE", context)]
        if backbone != "tiny" and not self.parameterAsFile(parameters, "WEIGHTS", context):
            arguments.append("--pretrained")  # the engine takes the cached weights or downloads them
        # both ways explicit: the engine's defaults for these two may change with the evidence
        arguments.append("--aux-loss" if self.parameterAsBoolean(parameters, "AUX_LOSS", context)
                         else "--no-aux-loss")
        arguments.append("--feature-pyramid" if self.parameterAsBoolean(parameters, "FEATURE_PYRAMID", context)
                         else "--no-feature-pyramid")
        self.run_engine(arguments, feedback, [output])
        results: dict[str, Any] = {"OUTPUT": output}
        last = Path(output).with_name(Path(output).name.removesuffix(".safetensors") + LAST_SUFFIX)
        if last.is_file():
            results["OUTPUT_LAST"] = str(last)
        return results
