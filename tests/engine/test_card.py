"""Model cards are read field by field: a wrong type or range is refused with the file, the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mobanet.card import CARD_KEY, ModelCard
from mobanet.errors import ModelFileError
from mobanet.model import MoBaNetConfig, build_model
from mobanet.modelfile import load_model, read_card, save_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("card") / "good.safetensors"
    save_model(path, build_model(MoBaNetConfig()), ModelCard(gsd=0.1))
    return path


def with_card(source: Path, folder: Path, change) -> Path:
    """A copy of ``source`` whose card JSON went through ``change(card_dict)``."""
    with safe_open(str(source), framework="pt") as handle:
        card = json.loads(handle.metadata()[CARD_KEY])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    change(card)
    path = folder / "edited.safetensors"
    save_file(tensors, str(path), metadata={CARD_KEY: json.dumps(card)})
    return path


def setter(*keys, value):
    def change(card: dict) -> None:
        target = card
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
    return change


CASES = {
    "format as text": (setter("format", value="1"), "field 'format' must be a whole number of at least 1, not '1'"),
    "newer format": (setter("format", value=2), "has format 2, newer than this engine"),
    "colours as names": (setter("class_colors", value=lambda c: ["white", *c[1:]]),
                         "field 'class_colors[0]' must be [red, green, blue] with whole numbers 0-255, not 'white'"),
    "colour out of range": (setter("class_colors", value=lambda c: [[0, 0, 300], *c[1:]]), "class_colors[0]"),
    "one colour missing": (setter("class_colors", value=lambda c: c[:-1]), "field 'class_colors' must be a list of "
                                                                            "6 items"),
    "class name empty": (setter("class_names", value=lambda n: ["", *n[1:]]), "field 'class_names[0]' must be a "
                                                                              "non-empty text"),
    "class named twice": (setter("class_names", value=lambda n: [n[1], *n[1:]]), "each class once"),
    "num_classes as text": (setter("config", "num_classes", value="6"),
                            "field 'config.num_classes' must be a whole number of at least 1, not '6'"),
    "flag as number": (setter("config", "aux_heads", value=1), "field 'config.aux_heads' must be true or false"),
    "unknown choice": (setter("config", "fusion", value="sum"), "field 'config.fusion' must be one of 'gated'"),
    "unknown backbone": (setter("config", "backbone", value="vit_unknown"),
                         "field 'config.backbone' names a backbone this engine does not know ('vit_unknown')"),
    "negative gsd": (setter("gsd", value=-0.1), "field 'gsd' must be a positive number, not -0.1"),
    "gsd as text": (setter("gsd", value="0.1"), "field 'gsd' must be a positive number, not '0.1'"),
    "window zero": (setter("window", value=0), "field 'window' must be a whole number of at least 1"),
    "window fraction": (setter("window", value=266.5), "field 'window' must be a whole number"),
    "two bands": (setter("optical_bands", value=[1, 2]), "field 'optical_bands' must be a list of 3 items"),
    "band zero": (setter("optical_bands", value=[0, 1, 2]), "field 'optical_bands[0]' must be a whole number of at "
                                                            "least 1"),
    "std zero": (setter("optical_normalization", "std", value=[0.2, 0, 0.2]),
                 "field 'optical_normalization.std[1]' must be a positive number"),
    "unknown scale": (setter("optical_normalization", "scale", value="log"), "'optical_normalization.scale' must be "
                                                                              "one of 'auto', 'uint8', 'percentile'"),
    "percentiles swapped": (setter("dsm_normalization", "low", value=99.9), "'dsm_normalization.low' must be below"),
    "dsm scale zero": (setter("dsm_normalization", "scale", value=0), "'dsm_normalization.scale' must be a non-zero"),
    "normalisation as text": (setter("dsm_normalization", value="minmax"), "'dsm_normalization' must be a JSON object"),
    "flag as text": (setter("adapter_only", value="no"), "field 'adapter_only' must be true or false, not 'no'"),
    "hash": (setter("backbone_weights_sha256", value="abc"), "'backbone_weights_sha256' must be 64 hexadecimal"),
    "training as list": (setter("training", value=[]), "field 'training' must be a JSON object"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_card_fields_name_the_file_and_the_field(tmp_path, model_file, case):
    change, expected = CASES[case]
    path = with_card(model_file, tmp_path, change)
    with pytest.raises(ModelFileError) as caught:
        load_model(path)
    message = str(caught.value)
    assert str(path) in message and expected in message, message
    assert "mobanet train" in message or "update mobanet" in message  # the fix


def test_a_valid_card_reads_back_with_engine_types(tmp_path, model_file):
    card = read_card(model_file)
    assert card.gsd == 0.1 and card.window == 266 and card.class_colors[1] == (0, 0, 255)
    assert isinstance(card.optical_normalization.mean, tuple)
    path = with_card(model_file, tmp_path, setter("gsd", value=None))
    assert read_card(path).gsd is None
    future = with_card(model_file, tmp_path, setter("colour_ramp", value="new field"))
    assert read_card(future).training["unknown_card_fields"] == ["colour_ramp"]
    assert ModelCard.from_json(card.to_json()) == card
