"""MoBaNet model files: safetensors tensors plus the model card in the metadata.

A file holds either only the tensors training changes ("adapter-only": a few
MB to tens of MB, the backbone comes from its pretrained weights at load
time, checked against the recorded SHA-256) or every tensor ("full": needed
when the backbone is random, like ``tiny``, or fine-tuned). Pickles are never
opened: a model file is data, not code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from mobanet import __version__
from mobanet.card import CARD_KEY, ModelCard
from mobanet.errors import InputError, ModelFileError, WeightsError
from mobanet.fileformat import HeaderError, SafetensorsHeader, foreign_format, read_safetensors_header, save_safetensors
from mobanet.fileutil import OutputSet
from mobanet.model import MoBaNet, MoBaNetConfig, build_model
from mobanet.model.backbone import missing_weights_message, resolve_backbone
from mobanet.pathcheck import check_writable
from mobanet.wording import option


def save_model(path: str | Path, model: MoBaNet, card: ModelCard, full: bool = False,
               outputs: OutputSet | None = None) -> None:
    """Write ``model`` with ``card`` (filled in place: config, backbone, adapter_only, engine_version).

    Adapter-only unless ``full`` or the backbone cannot be rebuilt from
    pretrained weights (random like ``tiny``, or fine-tuned). With
    ``outputs`` the file joins that set (committed with the command's other
    outputs); without, it is written and committed on its own.
    """
    if outputs is None:
        path = check_writable(path)
        with OutputSet() as own:
            save_model(path, model, card, full, own)
        return
    if card.num_classes != model.config.num_classes:
        raise ModelFileError(f"Cannot save {path}: the card names {card.num_classes} classes but the network "
                             f"predicts {model.config.num_classes}; give the card the network's class list.")
    card.config = model.config.to_dict()
    card.backbone = model.config.backbone
    card.adapter_only = not (full or model.config.finetune_backbone or not model.backbone_pretrained)
    card.engine_version = __version__
    if model.backbone_weights_sha256 is not None:
        card.backbone_weights_sha256 = model.backbone_weights_sha256
    state = model.trainable_state_dict() if card.adapter_only else model.state_dict()
    save_safetensors(outputs, path, state, {CARD_KEY: card.to_json()})


def _open_error(path: Path, exc: Exception) -> ModelFileError:
    return ModelFileError(f"{path} is not a readable safetensors model file ({exc}); it may be truncated or "
                          "corrupt: copy or download it again.")


def _read_header(path: Path) -> SafetensorsHeader:
    """The safetensors header of a model file, or a `ModelFileError` that says what the file is instead."""
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors"))
        hint = f" (it holds {', '.join(found[:3])}{' ...' if len(found) > 3 else ''})" if found else ""
        raise ModelFileError(f"Model {path} is a folder{hint}; give the .safetensors model file itself.")
    if not path.is_file():
        raise ModelFileError(f"Model file {path} does not exist; check the path, or train one with `mobanet train`.")
    try:
        return read_safetensors_header(path)
    except HeaderError as exc:
        kind = foreign_format(path)
        if kind in ("pickle", "pytorch-archive"):
            raise ModelFileError(
                f"{path} is a PyTorch pickle (.pt/.pth); pickle files are never loaded; convert to safetensors "
                "(load it yourself where you trust it, then mobanet.modelfile.save_model).") from exc
        raise _open_error(path, exc) from exc
    except OSError as exc:
        raise ModelFileError(f"Cannot read model file {path} ({exc.strerror}); check its permissions.") from exc


def read_card(path: str | Path) -> ModelCard:
    """The model card of a model file, without loading its tensors."""
    path = Path(path)
    metadata = _read_header(path).metadata
    if CARD_KEY not in metadata:
        raise ModelFileError(f"{path} has no MoBaNet model card (metadata key {CARD_KEY!r}); it is not a MoBaNet "
                             "model file: use one written by `mobanet train`.")
    try:
        return ModelCard.from_json(metadata[CARD_KEY])
    except ModelFileError as exc:
        raise ModelFileError(f"Model file {path}: {exc} Re-export the model with `mobanet train` or fix its "
                             "card.") from exc


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:
        raise _open_error(path, exc) from exc


def _check_tensors(path: Path, found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Names and shapes must match exactly; the message lists the first few differences."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{n} {tuple(found[n].shape)} != {tuple(expected[n].shape)}" for n in sorted(set(found) & set(expected))
             if found[n].shape != expected[n].shape]
    problems = [f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                if items]
    if problems:
        raise ModelFileError(f"{path} does not fit the network its card describes ({'; '.join(problems)}); "
                             "the file is damaged or was written by an incompatible engine version.")


def model_config(path: str | Path, card: ModelCard) -> MoBaNetConfig:
    """The network configuration a card describes, checked against its class list."""
    if not card.config:
        raise ModelFileError(f"{path}: the model card has no network configuration; re-export the model.")
    try:
        config = MoBaNetConfig.from_dict(card.config)
    except ModelFileError as exc:
        raise ModelFileError(f"Model file {path}: {exc} Re-export the model with `mobanet train` or fix its "
                             "card.") from exc
    try:
        resolve_backbone(config.backbone)
    except InputError as exc:
        raise ModelFileError(f"Model file {path}: the card's field 'config.backbone' names a backbone this engine "
                             f"does not know ({config.backbone!r}); update mobanet, or re-export the model with "
                             "`mobanet train`.") from exc
    if config.num_classes != card.num_classes:
        raise ModelFileError(f"{path}: the card lists {card.num_classes} classes but the network has "
                             f"{config.num_classes}; the file is inconsistent, re-export the model.")
    return config


def load_model(path: str | Path, weights: str | Path | None = None, pretrained: bool = False,
               device: str | torch.device = "cpu") -> tuple[MoBaNet, ModelCard]:
    """Rebuild the network a model file describes; returned in eval mode on ``device``.

    Adapter-only files need the backbone: ``weights`` (a local file, checked
    against the card's SHA-256 when recorded) or ``pretrained=True``.
    """
    path = Path(path)
    card = read_card(path)
    config = model_config(path, card)
    if card.adapter_only:
        if weights is None and not pretrained:
            raise WeightsError(f"{path} holds only the trained adapter; "
                               f"{missing_weights_message(resolve_backbone(card.backbone))}")
        model = build_model(config, weights=weights, pretrained=pretrained)
        recorded = card.backbone_weights_sha256
        if weights is not None and recorded and model.backbone_weights_sha256 != recorded:
            raise WeightsError(f"Backbone weights {weights} differ from the ones {path} was trained on "
                               f"(SHA-256 {model.backbone_weights_sha256[:12]}... != {recorded[:12]}...); "
                               f"give the original {card.backbone} weights file with {option('--weights')}.")
        expected = model.trainable_state_dict()
    else:
        model = build_model(config, random_init=True)
        expected = model.state_dict()
    tensors = _read_tensors(path)
    _check_tensors(path, tensors, expected)
    model.load_state_dict(tensors, strict=not card.adapter_only)
    return model.to(device).eval(), card
