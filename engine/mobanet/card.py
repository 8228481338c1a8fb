"""The model card: everything about a model that travels with its file.

A model file is safetensors; its metadata holds this card as one JSON string
under the key ``mobanet.card``. The raster engine and the trainer read band
order, normalisation, class list and window size from here, never from code
defaults, so a model always meets its inputs the way it was trained.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from mobanet import __version__
from mobanet import jsonfields as fields
from mobanet.classes import CLUTTER_NAME, ISPRS_CLASSES
from mobanet.errors import ModelFileError
from mobanet.jsonfields import FieldError

CARD_KEY = "mobanet.card"
CARD_FORMAT = 1

# The window, in pixels, a model is trained, validated and applied on: 19 patches of 14 px (the authors'
# 256 px windows rounded up to whole patches, all of it real pixels). Models record their own.
DEFAULT_WINDOW = 266
MAX_CARD_WINDOW = 8192  # pixels; inference bounds the window further (mobanet.raster.predict)
SHA256 = re.compile(r"[0-9a-f]{64}")
OPTICAL_SCALES = ("auto", "uint8", "percentile")
DSM_MODES = ("raster_minmax", "fixed")

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
    # Validation scores of this very model by input ("both", "dsm_absent", "optical_absent"), each the headline
    # numbers (miou, mf1, overall_accuracy, miou_all, kappa; fractions). Empty: trained without validation or by
    # an older engine. `mobanet segment` quotes them when a DSM is absent.
    modality_scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
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
        """A card from its JSON fields, each checked for type and range (`ModelFileError` names the field)."""
        try:
            return cls._checked(data)
        except FieldError as exc:
            raise ModelFileError(f"The model card's {exc}.") from exc

    @classmethod
    def _checked(cls, data: dict[str, Any]) -> ModelCard:
        version = fields.whole(data.get("format", CARD_FORMAT), "format", minimum=1)
        if version > CARD_FORMAT:
            raise ModelFileError(f"The model card has format {version}, newer than this engine ({__version__}) "
                                 "reads; update mobanet.")
        known = set(cls.__dataclass_fields__)
        card = cls(**{k: v for k, v in data.items() if k in known})
        card.name = fields.text(card.name, "name")
        card.description = fields.text(card.description, "description")
        card.class_names = [fields.text(n, f"class_names[{i}]", nonempty=True)
                            for i, n in enumerate(fields.items(card.class_names, "class_names", least=1))]
        if len(set(card.class_names)) != len(card.class_names):
            raise FieldError(f"field 'class_names' must name each class once, not {card.class_names}")
        card.class_colors = [fields.colour(c, f"class_colors[{i}]") for i, c in
                             enumerate(fields.items(card.class_colors, "class_colors", count=len(card.class_names)))]
        card.ignore_classes_in_mean = [fields.text(n, f"ignore_classes_in_mean[{i}]") for i, n in
                                       enumerate(fields.items(card.ignore_classes_in_mean, "ignore_classes_in_mean"))]
        card.optical_bands = [fields.whole(b, f"optical_bands[{i}]", minimum=1)
                              for i, b in enumerate(fields.items(card.optical_bands, "optical_bands", count=3))]
        card.optical_normalization = _optical_normalization(card.optical_normalization)
        card.dsm_normalization = _dsm_normalization(card.dsm_normalization)
        if card.gsd is not None:
            card.gsd = fields.number(card.gsd, "gsd", positive=True)
        card.window = fields.whole(card.window, "window", minimum=1, maximum=MAX_CARD_WINDOW)
        card.config = fields.mapping(card.config, "config")
        card.backbone = fields.text(card.backbone, "backbone", nonempty=True)
        if card.backbone_weights_sha256 is not None and not SHA256.fullmatch(str(card.backbone_weights_sha256)):
            raise FieldError(f"field 'backbone_weights_sha256' must be 64 hexadecimal digits, not "
                             f"{card.backbone_weights_sha256!r}")
        card.adapter_only = fields.flag(card.adapter_only, "adapter_only")
        card.engine_version = fields.text(card.engine_version, "engine_version")
        card.training = fields.mapping(card.training, "training")
        card.format = version
        if set(data) - known:
            card.training.setdefault("unknown_card_fields", sorted(set(data) - known))
        return card

    def mean_class_indices(self) -> list[int]:
        """Classes averaged into mF1/mIoU (all but clutter, the ISPRS habit)."""
        return [i for i, n in enumerate(self.class_names) if n not in self.ignore_classes_in_mean]


def _percentiles(low: Any, high: Any, name: str) -> tuple[float, float]:
    low = fields.number(low, f"{name}.low", minimum=0, maximum=100)
    high = fields.number(high, f"{name}.high", minimum=0, maximum=100)
    if low >= high:
        raise FieldError(f"field '{name}.low' must be below '{name}.high', not {low} >= {high}")
    return low, high


def _known_fields(value: Any, kind: type, name: str) -> Any:
    """``value`` (a dataclass or its JSON object) as a ``kind``, refusing fields ``kind`` does not have."""
    if isinstance(value, kind):
        value = asdict(value)
    data = fields.mapping(value, name)
    unknown = set(data) - set(kind.__dataclass_fields__)
    if unknown:
        raise FieldError(f"field '{name}' must not hold {sorted(unknown)}")
    return kind(**data)


def _optical_normalization(value: Any) -> OpticalNormalization:
    name = "optical_normalization"
    norm = _known_fields(value, OpticalNormalization, name)
    low, high = _percentiles(norm.low, norm.high, name)
    mean = [fields.number(v, f"{name}.mean[{i}]") for i, v in enumerate(fields.items(norm.mean, f"{name}.mean", 3))]
    std = [fields.number(v, f"{name}.std[{i}]", positive=True)
           for i, v in enumerate(fields.items(norm.std, f"{name}.std", 3))]
    return OpticalNormalization(fields.text(norm.scale, f"{name}.scale", OPTICAL_SCALES), low, high,
                                tuple(mean), tuple(std))


def _dsm_normalization(value: Any) -> DsmNormalization:
    name = "dsm_normalization"
    norm = _known_fields(value, DsmNormalization, name)
    low, high = _percentiles(norm.low, norm.high, name)
    return DsmNormalization(fields.text(norm.mode, f"{name}.mode", DSM_MODES), low, high,
                            fields.number(norm.offset, f"{name}.offset"),
                            fields.number(norm.scale, f"{name}.scale", nonzero=True),
                            fields.number(norm.mean, f"{name}.mean"),
                            fields.number(norm.std, f"{name}.std", positive=True))
