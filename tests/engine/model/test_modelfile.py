"""Model files: safetensors round trips and readable errors for every kind of bad file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mobanet.card import CARD_KEY, ModelCard
from mobanet.errors import InputError, ModelFileError, WeightsError
from mobanet.model import MoBaNetConfig, build_model
from mobanet.modelfile import load_model, read_card, save_model


def trained_a_little(model: torch.nn.Module, inputs) -> torch.nn.Module:
    """Move every trainable tensor (and BatchNorm statistics) away from its initial value."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.01 * torch.randn_like(param))
    model.train()
    model.forward_train(*inputs(2, 42, 42, seed=9))
    return model.eval()


def logits(model: torch.nn.Module, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(*inputs(2, 50, 64, seed=4))


def file_card(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()[CARD_KEY])


@pytest.mark.parametrize("options", [dict(cpia="direct", feature_pyramid=True), dict(profile="reference")],
                         ids=["mobanet", "reference"])
def test_full_round_trip_gives_identical_logits(tmp_path, inputs, options):
    torch.manual_seed(0)
    model = trained_a_little(build_model(MoBaNetConfig(**options)), inputs)
    card = ModelCard(name="demo", description="tiny test model")
    save_model(tmp_path / "m.safetensors", model, card)
    assert card.adapter_only is False and card.backbone == "tiny"  # a random backbone can only travel in full
    assert card.config == model.config.to_dict()
    loaded, loaded_card = load_model(tmp_path / "m.safetensors")
    assert not loaded.training and loaded_card.name == "demo" and loaded.config == model.config
    assert torch.equal(logits(loaded, inputs), logits(model, inputs))
    assert read_card(tmp_path / "m.safetensors").to_json() == loaded_card.to_json()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind


def test_adapter_only_round_trip_with_the_weights_file(tmp_path, meta_weights, inputs):
    torch.manual_seed(1)
    model = trained_a_little(build_model(MoBaNetConfig(), weights=meta_weights), inputs)
    save_model(tmp_path / "adapter.safetensors", model, ModelCard())
    save_model(tmp_path / "full.safetensors", model, ModelCard(), full=True)
    card = file_card(tmp_path / "adapter.safetensors")
    assert card["adapter_only"] is True and card["backbone_weights_sha256"] == model.backbone_weights_sha256
    with safe_open(str(tmp_path / "adapter.safetensors"), framework="pt") as handle:
        assert not any(name.startswith("backbone.") for name in handle.keys())
    assert (tmp_path / "adapter.safetensors").stat().st_size < (tmp_path / "full.safetensors").stat().st_size

    adapter, _ = load_model(tmp_path / "adapter.safetensors", weights=meta_weights)
    full, _ = load_model(tmp_path / "full.safetensors")
    expected = logits(model, inputs)
    assert torch.equal(logits(adapter, inputs), expected)
    assert torch.equal(logits(full, inputs), expected)


def test_adapter_only_needs_the_right_backbone_weights(tmp_path, meta_weights, tiny_source, meta_layout):
    model = build_model(MoBaNetConfig(), weights=meta_weights)
    save_model(tmp_path / "adapter.safetensors", model, ModelCard())
    with pytest.raises(WeightsError, match="holds only the trained adapter.*--weights"):
        load_model(tmp_path / "adapter.safetensors")
    other = meta_layout(tiny_source.state_dict(), registers=False)
    other["norm.weight"] = other["norm.weight"] + 1
    torch.save(other, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="differ from the ones .* was trained on"):
        load_model(tmp_path / "adapter.safetensors", weights=tmp_path / "other.pth")


def write_file(path: Path, tensors: dict[str, torch.Tensor], card_text: str | None) -> Path:
    save_file(tensors, str(path), metadata=None if card_text is None else {CARD_KEY: card_text})
    return path


@pytest.fixture
def good_file(tmp_path) -> Path:
    torch.manual_seed(2)
    path = tmp_path / "good.safetensors"
    save_model(path, build_model(MoBaNetConfig(num_classes=6)), ModelCard())
    return path


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match=r"nope.safetensors does not exist; check the path"):
        load_model(tmp_path / "nope.safetensors")


def test_truncated_file(good_file, tmp_path):
    data = good_file.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.safetensors is not a readable safetensors.*truncated or corrupt"):
        load_model(tmp_path / "cut.safetensors")


def test_garbage_file(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ModelFileError, match="junk.safetensors is not a readable safetensors"):
        read_card(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model.safetensors"])
def test_pickle_files_are_never_loaded(tmp_path, name):
    torch.save({"w": torch.zeros(2)}, tmp_path / name)
    with pytest.raises(ModelFileError, match="pickle files are never loaded; convert to safetensors"):
        load_model(tmp_path / name)
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"w": 1}, protocol=4))
    with pytest.raises(ModelFileError, match="pickle files are never loaded"):
        read_card(tmp_path / "raw.pkl")


def test_file_without_card(good_file, tmp_path):
    path = write_file(tmp_path / "nocard.safetensors", tensors_of(good_file), None)
    with pytest.raises(ModelFileError, match="nocard.safetensors has no MoBaNet model card"):
        load_model(path)


def test_bad_card_json(good_file, tmp_path):
    path = write_file(tmp_path / "badcard.safetensors", tensors_of(good_file), "{not json")
    with pytest.raises(ModelFileError, match="badcard.safetensors: The model card is not valid JSON"):
        load_model(path)


def test_wrong_tensor_shapes_and_names(good_file, tmp_path):
    tensors = tensors_of(good_file)
    card_text = json.dumps(file_card(good_file))
    tensors["projection.weight"] = tensors["projection.weight"][:100]
    path = write_file(tmp_path / "shape.safetensors", tensors, card_text)
    with pytest.raises(ModelFileError, match=r"shape.safetensors does not fit .*wrong shape: projection.weight"):
        load_model(path)
    del tensors["projection.weight"]
    tensors["extra"] = torch.zeros(1)
    path = write_file(tmp_path / "names.safetensors", tensors, card_text)
    with pytest.raises(ModelFileError, match=r"missing: projection.weight; unexpected: extra"):
        load_model(path)


def test_class_count_mismatch(good_file, tmp_path):
    card = file_card(good_file)
    card["class_names"], card["class_colors"] = card["class_names"][:5], card["class_colors"][:5]
    path = write_file(tmp_path / "classes.safetensors", tensors_of(good_file), json.dumps(card))
    with pytest.raises(ModelFileError, match="card lists 5 classes but the network has 6"):
        load_model(path)
    with pytest.raises(ModelFileError, match="names 5 classes but the network predicts 6"):
        save_model(tmp_path / "x.safetensors", build_model(MoBaNetConfig()), ModelCard.from_json(json.dumps(card)))


def test_unknown_config_key(good_file, tmp_path):
    card = file_card(good_file)
    card["config"]["wings"] = 2
    path = write_file(tmp_path / "newer.safetensors", tensors_of(good_file), json.dumps(card))
    with pytest.raises(ModelFileError, match=r"unknown keys \['wings'\]"):
        load_model(path)


def test_save_into_a_missing_folder_fails_with_the_fix(tmp_path):
    with pytest.raises(InputError, match="does not exist; create it"):
        save_model(tmp_path / "no" / "m.safetensors", build_model(MoBaNetConfig()), ModelCard())


def test_a_model_whose_header_length_looks_like_a_pickle_loads(tmp_path, inputs):
    """About 1 in 32 files has a header length with low byte 0x80; they are valid models."""
    torch.manual_seed(3)
    model = build_model(MoBaNetConfig())
    path = tmp_path / "m.safetensors"
    save_model(path, model, ModelCard())
    first = path.read_bytes()[0]
    for pad in range((0x80 - first) % 256, 300, 8):  # the header grows with the description, padded to 8 bytes
        save_model(path, model, ModelCard(description="d" * pad))
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no model file with a header length of low byte 0x80 was written")
    loaded, card = load_model(path)
    assert card.description == "d" * pad
    assert torch.equal(logits(loaded, inputs), logits(model, inputs))


def test_a_folder_given_as_a_model_says_so(tmp_path, good_file):
    with pytest.raises(ModelFileError, match=rf"Model {tmp_path} is a folder \(it holds good.safetensors\); give "
                                             "the .safetensors model file itself"):
        read_card(tmp_path)
