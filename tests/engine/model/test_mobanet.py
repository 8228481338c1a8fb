"""The network: shapes, what trains and what stays frozen, the batched dual stream, variants."""

from __future__ import annotations

import pytest
import timm
import torch

from mobanet.errors import InputError, ModelFileError, WeightsError
from mobanet.model import MoBaNet, MoBaNetConfig, MoBaNetLoss, build_model, resolve_backbone
from mobanet.model.backbone import stage_taps
from mobanet.model.fusion import GatedFusion

VARIANTS = [
    {},
    {"cpia": "direct"},
    {"cpia": "none"},
    {"fusion": "mean"},
    {"streams": "optical"},
    {"streams": "dsm"},
    {"streams": "early"},
    {"finetune_backbone": True},
    {"feature_pyramid": True},
    {"aux_heads": False},
    {"profile": "reference"},
    {"profile": "reference", "finetune_backbone": True},
]


def tiny(**options) -> MoBaNet:
    torch.manual_seed(0)
    return build_model(MoBaNetConfig(**options))


@pytest.mark.parametrize("size", [(97, 131), (14, 14), (20, 9), (266, 266)])
def test_logits_have_input_size_for_any_size(size, inputs):
    model = tiny(num_classes=4)
    optical, dsm = inputs(2, *size)
    with torch.no_grad():
        logits = model(optical, dsm)
    assert logits.shape == (2, 4, *size)
    assert torch.isfinite(logits).all()


def test_forward_train_returns_aux_logits_of_input_size(inputs):
    model = tiny().train()
    outputs = model.forward_train(*inputs(2, 45, 60))
    assert outputs["logits"].shape == outputs["aux_optical"].shape == outputs["aux_dsm"].shape == (2, 6, 45, 60)


def test_mismatched_windows_are_refused(inputs):
    optical, _ = inputs(1, 28, 28)
    _, dsm = inputs(1, 28, 42)
    with pytest.raises(InputError, match="do not match"):
        tiny()(optical, dsm)


def test_backward_reaches_only_trainable_parameters_and_backbone_stays_bit_identical(inputs):
    model = tiny().train()
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    optical, dsm = inputs(2, 42, 56)
    target = torch.randint(0, 6, (2, 42, 56))
    for _ in range(2):
        optimizer.zero_grad()
        loss, _ = MoBaNetLoss()(model.forward_train(optical, dsm), target)
        loss.backward()
        optimizer.step()
    for name, param in model.named_parameters():
        if name.startswith("backbone."):
            assert not param.requires_grad and param.grad is None, name
        else:
            assert param.requires_grad and param.grad is not None, name
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, backbone_before[name]), name
    # and the trainable side did move: the DSM patch embedding left its copy of the frozen one
    assert not torch.equal(model.dsm_patch_embed.proj.weight, model.backbone.patch_embed.proj.weight)


def test_reference_profile_is_wired_as_the_authors_released_it():
    model, ours = tiny(profile="reference"), tiny()
    assert model.config.cpia == "direct" and ours.config.cpia == "adapter"
    assert len(model.projections) == 4 and not hasattr(model, "projection") and not hasattr(ours, "projections")
    fusion = model.fusion[0]
    assert fusion.mix.bias is None and fusion.group_norm.num_groups == 1
    assert ours.fusion[0].mix.bias is not None and ours.fusion[0].group_norm.num_groups == 8
    head = model.head
    assert len(head.laterals[0]) == 2 and isinstance(head.fpn_convs[0][2], torch.nn.ReLU6)  # conv-BN, no activation
    assert isinstance(head.ppm.branches[0][2], torch.nn.BatchNorm2d) and head.classifier.bias is None
    assert isinstance(ours.head.ppm.branches[0][2], torch.nn.ReLU) and ours.head.classifier.bias is not None
    aux = model.aux_heads["optical"]
    assert aux.conv[0].out_channels == 256 and aux.classifier.bias is None and type(aux.dropout) is torch.nn.Dropout
    assert ours.aux_heads["optical"].conv[0].out_channels == 64


def test_frozen_backbone_stays_in_eval_mode_under_train():
    model = tiny().train()
    assert model.training and model.head.training and model.cpia.training
    assert not any(m.training for m in model.backbone.modules())
    finetuned = tiny(finetune_backbone=True).train()
    assert all(m.training for m in finetuned.backbone.modules())


def test_trainable_state_dict_excludes_only_the_frozen_backbone():
    model = tiny()
    names = set(model.trainable_state_dict())
    assert names and not any(n.startswith("backbone.") for n in names)
    assert "head.bottleneck.1.running_mean" in names  # BatchNorm statistics train too
    assert names | {n for n in model.state_dict() if n.startswith("backbone.")} == set(model.state_dict())
    assert set(tiny(finetune_backbone=True).trainable_state_dict()) == set(model.state_dict())


def test_batched_dual_stream_equals_two_separate_passes(inputs):
    model = tiny(cpia="direct")  # direct CPIA changes the tokens from the start, so the blocks see both streams
    optical, dsm = inputs(3, 56, 70)
    with torch.no_grad():
        batched = model.encode(optical, dsm, batched=True)
        separate = model.encode(optical, dsm, batched=False)
    for stream_b, stream_s in zip(batched, separate, strict=True):
        for map_b, map_s in zip(stream_b, stream_s, strict=True):
            assert map_b.shape == (3, 128, 4, 5)
            torch.testing.assert_close(map_b, map_s, atol=1e-5, rtol=1e-5)


def test_dual_stream_calls_each_block_once_per_stage(inputs):
    model = tiny()
    calls = []
    hooks = [b.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0])) for b in model.backbone.blocks]
    with torch.no_grad():
        model(*inputs(2, 28, 28))
    for hook in hooks:
        hook.remove()
    assert calls == [4] * len(model.backbone.blocks)  # one call each, on 2B samples


def test_untrained_adapter_cpia_keeps_the_backbone_features(inputs):
    """Zero-initialised adapters: the optical stream's stage maps are timm's own normed intermediates (with
    timm's position resampling, which timm's forward uses; DINOv2's is checked in test_position)."""
    model = tiny(pos_embed_interpolation="timm")
    optical, dsm = inputs(2, 42, 56)
    with torch.no_grad():
        optical_maps, _ = model.encode(optical, dsm)
        reference = model.backbone.forward_intermediates(optical, indices=model.taps, norm=True,
                                                         output_fmt="NCHW", intermediates_only=True)
    for ours, theirs in zip(optical_maps, reference, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_gate_is_one_half_at_init(inputs):
    model = tiny()
    optical, dsm = inputs(2, 42, 42)
    with torch.no_grad():
        optical_maps, dsm_maps = model.encode(optical, dsm)
        for fusion, f_o, f_d in zip(model.fusion, optical_maps, dsm_maps, strict=True):
            assert isinstance(fusion, GatedFusion)
            gate = fusion.gate_map(f_o, f_d)
            assert torch.equal(gate, torch.full_like(gate, 0.5))
            torch.testing.assert_close(fusion(f_o, f_d), fusion.norm(0.5 * (f_o + f_d)))


def test_dsm_patch_embedding_starts_as_a_trainable_copy_and_early_fusion_uses_the_rgb_mean():
    model = tiny()
    assert torch.equal(model.dsm_patch_embed.proj.weight, model.backbone.patch_embed.proj.weight)
    assert model.dsm_patch_embed.proj.weight.requires_grad
    early = tiny(streams="early")
    weight, rgb = early.early_patch_embed.proj.weight, early.backbone.patch_embed.proj.weight
    assert weight.shape[1] == 4
    assert torch.equal(weight[:, :3], rgb)
    torch.testing.assert_close(weight[:, 3], rgb.mean(dim=1))


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_every_ablation_variant_runs_forward_and_backward(options, inputs):
    model = tiny(**options).train()
    optical, dsm = inputs(2, 30, 44)
    outputs = model.forward_train(optical, dsm)
    has_aux = options.get("streams", "dual") == "dual" and options.get("aux_heads", True)
    assert (outputs["aux_optical"] is not None) == has_aux
    loss, parts = MoBaNetLoss()(outputs, torch.randint(0, 6, (2, 30, 44)))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert torch.isfinite(loss) and parts["loss"] == pytest.approx(loss.item())
    with torch.no_grad():
        assert model.eval()(optical, dsm).shape == (2, 6, 30, 44)


def test_stage_taps_follow_the_paper():
    assert stage_taps(12) == [2, 5, 8, 11]
    assert stage_taps(24) == [5, 11, 17, 23]
    assert stage_taps(40) == [9, 19, 29, 39]
    assert stage_taps(4) == [0, 1, 2, 3]


def test_backbone_names_and_aliases():
    assert resolve_backbone("dinov2_vitl14").timm_name == "vit_large_patch14_dinov2.lvd142m"
    assert resolve_backbone("dinov2_vitb14_reg4").timm_name == "vit_base_patch14_reg4_dinov2.lvd142m"
    assert resolve_backbone("vit_giant_patch14_dinov2.lvd142m").timm_name == "vit_giant_patch14_dinov2.lvd142m"
    assert timm.is_model(resolve_backbone("tiny").timm_name)
    with pytest.raises(InputError, match="Unknown backbone 'dinov3'"):
        resolve_backbone("dinov3")


def test_pretrained_backbone_without_weights_names_the_file_to_download():
    with pytest.raises(WeightsError, match=r"dinov2_vitl14_pretrain\.pth.*--weights"):
        build_model(MoBaNetConfig(backbone="dinov2_vitl14"))


def test_missing_weights_file_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_model(MoBaNetConfig(backbone="dinov2_vits14"), weights=tmp_path / "nope.pth")


def test_vit_large_parameter_counts_on_meta_device():
    model = build_model(MoBaNetConfig(backbone="dinov2_vitl14"), device="meta")
    report = model.parameter_report()
    assert report["backbone"] == {"trainable": 0, "total": 304_367_616}
    assert 8e6 < report["all"]["trainable"] < 12e6
    assert report["all"]["total"] == report["all"]["trainable"] + 304_367_616
    assert model.taps == [5, 11, 17, 23]


def test_config_round_trip_and_bad_configs():
    config = MoBaNetConfig(backbone="dinov2_vits14", cpia="direct", num_classes=5)
    assert MoBaNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ModelFileError, match="unknown keys"):
        MoBaNetConfig.from_dict({**config.to_dict(), "dropout": 0.3})
    with pytest.raises(ModelFileError, match="field 'config.fusion' must be one of 'gated', 'mean', not 'max'"):
        MoBaNetConfig.from_dict({**config.to_dict(), "fusion": "max"})
    with pytest.raises(InputError, match="streams"):
        MoBaNetConfig(streams="triple")
