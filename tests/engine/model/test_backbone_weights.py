"""Offline backbone weights: original Meta DINOv2 ``.pth`` and timm ``.safetensors`` files."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from mobanet.errors import WeightsError
from mobanet.model import MoBaNetConfig, build_model
from mobanet.model.backbone import TINY_ARCHITECTURE, BackboneSpec, create_backbone, file_sha256


def assert_same_backbone(loaded: torch.nn.Module, source: torch.nn.Module) -> None:
    source_state = source.state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, source_state[name]), name


def test_meta_layout_pth_loads_through_the_weights_path_with_the_same_features(tiny_source, meta_weights):
    model = build_model(MoBaNetConfig(backbone="tiny"), weights=meta_weights)
    assert model.backbone_pretrained and model.backbone_weights_sha256 == file_sha256(meta_weights)
    assert_same_backbone(model.backbone, tiny_source)
    x = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        optical_maps, _ = model.encode(x, torch.zeros(1, 1, 518, 518))
        reference = tiny_source.forward_intermediates(x, indices=model.taps, norm=True, output_fmt="NCHW",
                                                      intermediates_only=True)
    for ours, theirs in zip(optical_maps, reference, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_meta_layout_with_registers_loads(meta_layout, tmp_path):
    spec = BackboneSpec("tiny-reg4", "vit_small_patch14_reg4_dinov2.lvd142m", dict(TINY_ARCHITECTURE))
    torch.manual_seed(5)
    source = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, **TINY_ARCHITECTURE).eval()
    path = tmp_path / "dinov2_tiny_reg4_pretrain.pth"
    state = meta_layout(source.state_dict(), registers=True)
    assert "register_tokens" in state and state["pos_embed"].shape[1] == 37 * 37 + 1
    torch.save(state, path)
    assert_same_backbone(create_backbone(spec, weights=path), source)


def test_timm_safetensors_file_loads(tiny_source, tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_source.state_dict().items()}, str(path))
    assert_same_backbone(build_model(MoBaNetConfig(), weights=path).backbone, tiny_source)


def test_weights_of_another_backbone_size_are_refused(meta_weights):
    with pytest.raises(WeightsError, match="Cannot load backbone weights .*dinov2_tiny_pretrain.pth"):
        build_model(MoBaNetConfig(backbone="dinov2_vits14"), weights=meta_weights)


class TouchOnUnpickle:
    """Unpickling this runs ``Path.touch(marker)``: the code a malicious checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_with_code_is_not_executed(tmp_path):
    path, marker = tmp_path / "evil.pth", tmp_path / "executed"
    torch.save({"pos_embed": torch.zeros(1), "payload": TouchOnUnpickle(marker)}, path)
    with pytest.raises(WeightsError, match="evil.pth"):
        build_model(MoBaNetConfig(), weights=path)
    assert not marker.exists()
