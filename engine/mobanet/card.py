"""The model card: everything about a model that travels with its file.

A model file is safetensors; its metadata holds this card as one JSON string
under the key ``mobanet.card``. The raster engine and the trainer read band
order, normalisation, class list and window size from here, never from code
defaults, so a model always meets its inputs the way it was trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mobanet import __version__
from mobanet.classes import CLUTTER_NAME, ISPRS_CLASSES
from mobanet.errors import ModelFileError

CARD_KEY = "mobanet.card"
CARD_FORMAT = 1

# The window, in pixels, a model is trained, validated and applied on: 19 patches of 14 px (the authors'
# 256 px windows rounded up to whole patches, all of it real pixels). Models record their own.
DEFAULT_WINDOW = 266

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class OpticalNormalization:
    """How optical values become network input.

    scale: "uint8" divides by 255 (8-bit imagery); "percentile" stretches each
    band between its ``low``/``high`` percentiles computed once over the whole
    raster (16-bit or float imagery); "auto" picks uint8 for Byte rasters and
    percentile otherwise. Then (x - mean) / std per band.
    """

    scale: str = "auto"
    low: float = 2.0
    high: float = 98.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass
class DsmNormalization:
    """How DSM metres become network input, never from a single window.

    mode: "raster_minmax" maps the ``low``..``high`` percentiles of the whole
    raster (computed once, over valid pixels) to 0..1, the authors' min-max
    habit made independent of the window grid; "fixed" computes
    (dsm - offset) / scale with the card's numbers. The result is then
    replicated to 3 channels and standardised with ``mean``/``std``.
    """

    mode: str = "raster_minmax"
    low: float = 0.5
    high: float = 99.5
    offset: float = 0.0
    scale: float = 1.0
    mean: float = 0.5
    std: float = 0.25


@dataclass
class ModelCard:
    """Metadata of one model file (see module docstring)."""

    name: str = "mobanet"
    description: str = ""
    class_names: list[str] = field(default_factory=lambda: [c.name for c in ISPRS_CLASSES])
    class_colors: list[tuple[int, int, int]] = field(default_factory=lambda: [c.color for c in ISPRS_CLASSES])
    ignore_classes_in_mean: list[str] = field(default_factory=lambda: [CLUTTER_NAME])
    optical_bands: list[int] = field(default_factory=lambda: [1, 2, 3])  # 1-based, R,G,B order
    optical_normalization: OpticalNormalization = field(default_factory=OpticalNormalization)
    dsm_normalization: DsmNormalization = field(default_factory=DsmNormalization)
    gsd: float | None = None  # metres per pixel of the training data; None = any
    window: int = DEFAULT_WINDOW  # training = validation = inference window (pixels), a multiple of the patch size
    config: dict[str, Any] = field(default_factory=dict)  # MoBaNetConfig.to_dict()
    backbone: str = "tiny"
    backbone_weights_sha256: str | None = None  # hash of the pretrained weights trained on
    adapter_only: bool = True  # file holds only trainable tensors
    engine_version: str = __version__
    training: dict[str, Any] = field(default_factory=dict)  # data, epochs, metrics, command
    format: int = CARD_FORMAT

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"The model card is not valid JSON ({exc}).") from exc
        if not isinstance(data, dict):
            raise ModelFileError("The model card is not a JSON object.")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if data.get("format", CARD_FORMAT) > CARD_FORMAT:
            raise ModelFileError(
                f"The model card has format {data['format']}, newer than this engine ({__version__}) reads; "
                "update mobanet.")
        data = {k: v for k, v in data.items() if k in known}
        try:
            if "optical_normalization" in data:
                data["optical_normalization"] = OpticalNormalization(**data["optical_normalization"])
            if "dsm_normalization" in data:
                data["dsm_normalization"] = DsmNormalization(**data["dsm_normalization"])
            card = cls(**data)
        except TypeError as exc:
            raise ModelFileError(f"The model card has unexpected fields: {exc}.") from exc
        card.class_colors = [tuple(int(v) for v in c) for c in card.class_colors]
        if unknown:
            card.training.setdefault("unknown_card_fields", sorted(unknown))
        if len(card.class_colors) != len(card.class_names) or not card.class_names:
            raise ModelFileError("The model card lists a different number of class names and colours.")
        if len(card.optical_bands) != 3:
            raise ModelFileError("The model card must name exactly 3 optical bands.")
        return card

    def mean_class_indices(self) -> list[int]:
        """Classes averaged into mF1/mIoU (all but clutter, the ISPRS habit)."""
        return [i for i, n in enumerate(self.class_names) if n not in self.ignore_classes_in_mean]
