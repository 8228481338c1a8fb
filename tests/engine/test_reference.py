"""`mobanet import`: checkpoints in the layout of the authors' train.py (sauryeo/MoBaNet) become model files
whose logits are the authors' network's.

The checkpoints here are built with random tensors from the fact sheet
(shared/reference/authors_state_dict_layout.json), and the authors' forward
pass is written out below from their definitions (`authors_forward`), so
neither the import nor the reference profile checks itself.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from osgeo import gdal
from safetensors import safe_open
from torch.nn import functional as F

from mobanet.classes import ISPRS_CLASSES
from mobanet.cli import main
from mobanet.errors import WeightsError
from mobanet.model import MoBaNetConfig, build_model
from mobanet.model.backbone import TINY_ARCHITECTURE
from mobanet.modelfile import load_model, read_card
from mobanet.raster import segment
from mobanet.reference import authors_layout

from .model.conftest import meta_layout

FACT_SHEET = Path(__file__).parent / "data" / "authors_state_dict_layout.json"  # a copy of the project's sheet
TAPS = {4: [0, 1, 2, 3], 12: [2, 5, 8, 11]}


@pytest.fixture(scope="module")
def fact_sheet() -> dict:
    return json.loads(FACT_SHEET.read_text())


def trainable_layout(fact_sheet: dict, width: int) -> dict[str, tuple[int, ...]]:
    """The authors' trainable tensors for a backbone of ``width``: the ViT-S/14 sheet with its widths replaced
    (C = 384, rank C/4 = 96, 2 ranks = 192, DGFM h = max(32, C/8) = 48, 3h = 144)."""
    hidden = max(32, width // 8)
    sizes = {384: width, 96: width // 4, 192: width // 2, 48: hidden, 144: 3 * hidden}
    return {k: tuple(sizes.get(d, d) for d in shape) for k, shape in fact_sheet["dinov2_vits14"]["keys"].items()}


def random_tensors(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            tensors[name] = torch.tensor(1000)
        elif name.endswith("running_var"):
            tensors[name] = torch.rand(shape, generator=generator) + 0.5
        elif re.search(r"(gate_net\.1|fuse_norms\.\d+|conv\.1|\.1\.1|convs\.\d+\.1|bottleneck\.1)\.weight$", name):
            tensors[name] = 1 + 0.1 * torch.randn(shape, generator=generator)  # norm scales
        else:
            tensors[name] = 0.1 * torch.randn(shape, generator=generator)
    return tensors


def timm_source(timm_name: str, seed: int, **architecture) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(timm_name, pretrained=False, num_classes=0, **architecture)
    with torch.no_grad():
        model.pos_embed.normal_(0, 0.5)  # a table with detail, so that its resampling matters
        for name, param in model.named_parameters():
            if name.endswith("gamma"):
                param.fill_(0.5)
    return model.eval()


def authors_checkpoint(fact_sheet: dict, source: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """What the authors' train.py saves: Meta-layout backbone under image_encoder.backbone. plus the rest."""
    backbone = {f"image_encoder.backbone.{k}": v for k, v in meta_layout(source.state_dict(), False).items()}
    return {**backbone, **random_tensors(trainable_layout(fact_sheet, source.embed_dim), seed)}


# -- the authors' forward pass, from their definitions ------------------------------------------------------
def authors_forward(t: dict[str, torch.Tensor], source: torch.nn.Module, optical: torch.Tensor,
                    dsm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, aux RGB and aux DSM logits of the authors' DINOv2 MoBaNet in eval mode (inputs multiple of 14)."""
    batch, _, height, width = optical.shape
    grid_h, grid_w, channels = height // 14, width // 14, source.embed_dim
    pos = t["image_encoder.backbone.pos_embed"]
    side = math.isqrt(pos.shape[1] - 1)
    square = pos[:, 1:].reshape(1, side, side, channels).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(square, scale_factor=((grid_h + 0.1) / side, (grid_w + 0.1) / side), mode="bicubic")
    pos = torch.cat([pos[:, :1], patch_pos.permute(0, 2, 3, 1).reshape(1, -1, channels)], dim=1)

    def tokens(image: torch.Tensor, embed: str) -> torch.Tensor:
        patches = F.conv2d(image, t[embed + "proj.weight"], t[embed + "proj.bias"], stride=14)
        cls = t["image_encoder.backbone.cls_token"].expand(batch, -1, -1)
        return torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1) + pos

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, t[name + ".weight"], t[name + ".bias"])

    def as_map(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(batch, channels, grid_h, grid_w)

    x_o = tokens(optical, "image_encoder.backbone.patch_embed.")
    x_d = tokens(dsm.expand(-1, 3, -1, -1), "image_encoder.extra_patch_embed.")
    fused_maps, optical_maps, dsm_maps, start = [], [], [], 0
    for stage, tap in enumerate(TAPS[len(source.blocks)]):
        c = f"image_encoder.peft_cpia_blocks.{stage}."
        u = linear(linear(torch.cat([linear(x_o[:, 1:], c + "D_fc1"), linear(x_d[:, 1:], c + "D_fc2")], -1),
                          c + "P_fc2"), c + "U_fc1")
        x_o = torch.cat([x_o[:, :1], x_o[:, 1:] + u + u * t[c + "tfts_gamma_rgb"] + t[c + "tfts_beta_rgb"]], 1)
        x_d = torch.cat([x_d[:, :1], x_d[:, 1:] + u + u * t[c + "tfts_gamma_dsm"] + t[c + "tfts_beta_dsm"]], 1)
        for block in source.blocks[start:tap + 1]:
            x_o, x_d = block(x_o), block(x_d)
        start = tap + 1
        norm = (t["image_encoder.backbone.norm.weight"], t["image_encoder.backbone.norm.bias"])
        f_o = as_map(F.layer_norm(x_o, (channels,), *norm, eps=1e-6)[:, 1:])
        f_d = as_map(F.layer_norm(x_d, (channels,), *norm, eps=1e-6)[:, 1:])
        g = f"image_encoder.peft_dgfm_blocks.{stage}."
        r_o, r_d = F.conv2d(f_o, t[g + "rgb_reduce.weight"]), F.conv2d(f_d, t[g + "dsm_reduce.weight"])
        hidden = F.conv2d(torch.cat([r_o, r_d, (r_o - r_d).abs()], 1), t[g + "gate_net.0.weight"])
        hidden = F.gelu(F.group_norm(hidden, 1, t[g + "gate_net.1.weight"], t[g + "gate_net.1.bias"]))
        gate = torch.sigmoid(F.conv2d(hidden, t[g + "gate_net.3.weight"], t[g + "gate_net.3.bias"]))
        fused = (gate * f_o + (1 - gate) * f_d).permute(0, 2, 3, 1)
        n = f"image_encoder.peft_fuse_norms.{stage}."
        fused = F.layer_norm(fused, (channels,), t[n + "weight"], t[n + "bias"]).permute(0, 3, 1, 2)
        projection = t[f"image_encoder.dual_proj_layers.{stage}.weight"]
        for maps, x in ((fused_maps, fused), (optical_maps, f_o), (dsm_maps, f_d)):
            maps.append(F.conv2d(x, projection))

    def conv_bn(x: torch.Tensor, name: str, relu6: bool = True) -> torch.Tensor:
        weight = t[name + "0.weight"]
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
        x = F.batch_norm(x, t[name + "1.running_mean"], t[name + "1.running_var"], t[name + "1.weight"],
                         t[name + "1.bias"], False, 0.0, 1e-5)
        return F.relu6(x) if relu6 else x

    def up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    c1, c2, c3, c4 = fused_maps
    size = c4.shape[-2:]
    pooled = [up(conv_bn(F.adaptive_avg_pool2d(c4, s), f"decoder.ppm.stages.{i}.1."), size)
              for i, s in enumerate((1, 2, 3, 6))]
    p4 = conv_bn(torch.cat([c4, *pooled], 1), "decoder.ppm.bottleneck.")
    laterals = [conv_bn(c, f"decoder.lateral_convs.{i}.", relu6=False) for i, c in enumerate((c1, c2, c3))]
    p3 = laterals[2] + up(p4, laterals[2].shape[-2:])
    p2 = laterals[1] + up(p3, laterals[1].shape[-2:])
    p1 = laterals[0] + up(p2, laterals[0].shape[-2:])
    outs = [conv_bn(p, f"decoder.fpn_convs.{i}.") for i, p in enumerate((p1, p2, p3))] + [p4]
    fused = conv_bn(torch.cat([up(o, p1.shape[-2:]) for o in outs], 1), "decoder.fpn_bottleneck.")
    logits = up(F.conv2d(fused, t["decoder.classifier.1.0.weight"]), (height, width))
    aux = [up(F.conv2d(conv_bn(maps[0], f"aux_head_{name}.conv."), t[f"aux_head_{name}.conv_out.0.weight"]),
              (height, width)) for name, maps in (("rgb", optical_maps), ("dsm", dsm_maps))]
    return logits, aux[0], aux[1]


# -- fixtures -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_source() -> torch.nn.Module:
    return timm_source("vit_small_patch14_dinov2.lvd142m", 7, **TINY_ARCHITECTURE)


@pytest.fixture(scope="module")
def tiny_checkpoint(fact_sheet, tiny_source, tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    tensors = authors_checkpoint(fact_sheet, tiny_source)
    path = tmp_path_factory.mktemp("authors") / "MoBaNet_epoch12_0.8123"  # train.py names files without suffix
    torch.save(tensors, path)
    return path, tensors


def inputs(height: int = 56, width: int = 42) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(height * width)
    return torch.randn(2, 3, height, width, generator=generator), torch.rand(2, 1, height, width, generator=generator)


def run_cli(arguments: list[str], capsys) -> tuple[int, list[dict]]:
    code = main([*arguments, "--json-progress"])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def assert_same_outputs(model, tensors, source, size=(56, 42)):
    """Our forward (inference and training outputs, eval mode) is the authors' on the same tensors."""
    optical, dsm = inputs(*size)
    with torch.no_grad():
        ours = model.forward_train(optical, dsm)
        theirs = authors_forward(tensors, source, optical, dsm)
        assert torch.equal(model(optical, dsm), ours["logits"])
    for label, expected in zip(("logits", "aux_optical", "aux_dsm"), theirs, strict=True):
        torch.testing.assert_close(ours[label], expected, atol=2e-5, rtol=1e-4, msg=label)


# -- the layout ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["dinov2_vits14", "dinov2_vitl14"])
def test_reference_profile_has_exactly_the_authors_tensors_and_parameter_count(fact_sheet, backbone):
    sheet = fact_sheet[backbone]
    model = build_model(MoBaNetConfig(backbone=backbone, profile="reference"), device="meta")
    layout = authors_layout(model)
    trainable = {k: v for k, v in layout.items() if not k.startswith(sheet["backbone_keys_prefix"])}
    assert trainable == {k: tuple(v) for k, v in sheet["keys"].items()}
    assert len(layout) - len(trainable) == sheet["backbone_key_count"]
    assert set(sheet["backbone_key_examples"]) <= set(layout)
    assert model.parameter_report()["all"]["trainable"] == sheet["trainable"]
    width = layout["image_encoder.backbone.cls_token"][-1]
    assert {k: v for k, v in trainable_layout(fact_sheet, width).items()} == trainable  # the width rule holds


def test_info_counts_both_profiles(capsys, fact_sheet):
    counts = {}
    for profile in ("mobanet", "reference"):
        assert main(["info", "--backbone", "dinov2_vits14", "--profile", profile, "--json"]) == 0
        counts[profile] = json.loads(capsys.readouterr().out)
    assert counts["reference"]["trainable"] == fact_sheet["dinov2_vits14"]["trainable"]
    assert counts["reference"]["config"]["cpia"] == "direct" and counts["mobanet"]["config"]["cpia"] == "adapter"
    assert counts["mobanet"]["total"] - counts["mobanet"]["trainable"] == \
        counts["reference"]["total"] - counts["reference"]["trainable"]  # the same frozen backbone


# -- import -------------------------------------------------------------------------------------------------
def test_import_gives_the_authors_logits_and_a_full_card(tiny_checkpoint, tiny_source, tmp_path, capsys):
    path, tensors = tiny_checkpoint
    output = tmp_path / "authors.safetensors"
    code, events = run_cli(["import", str(path), "--output", str(output)], capsys)
    assert code == 0 and events[-1]["event"] == "result" and events[-1]["backbone"] == "tiny"
    assert any(e["event"] == "progress" for e in events)
    model, card = load_model(output)
    assert card.config["profile"] == "reference" and card.config["cpia"] == "direct"
    assert card.config["pos_embed_interpolation"] == "dinov2" and not card.adapter_only
    assert card.class_names == [c.name for c in ISPRS_CLASSES] and card.class_colors == [c.color for c in
                                                                                          ISPRS_CLASSES]
    assert card.window == 266 and card.optical_bands == [1, 2, 3]
    assert (card.dsm_normalization.mode, card.dsm_normalization.low, card.dsm_normalization.high) == \
        ("raster_minmax", 0.0, 100.0)
    assert (card.dsm_normalization.mean, card.dsm_normalization.std) == (0.0, 1.0)
    assert list(card.optical_normalization.mean) == [0.485, 0.456, 0.406]
    assert card.training["source"].startswith("sauryeo/MoBaNet") and path.name in card.description
    assert_same_outputs(model, tensors, tiny_source)
    assert_same_outputs(model, tensors, tiny_source, size=(42, 70))


def test_real_vits14_key_set_imports_with_the_authors_logits(fact_sheet, tmp_path, capsys):
    source = timm_source("vit_small_patch14_dinov2.lvd142m", 3)
    tensors = authors_checkpoint(fact_sheet, source, seed=3)
    assert set(tensors) - {k for k in tensors if k.startswith("image_encoder.backbone.")} == \
        set(fact_sheet["dinov2_vits14"]["keys"])
    path = tmp_path / "vits14.pth"
    torch.save(tensors, path)
    output = tmp_path / "vits14.safetensors"
    code, events = run_cli(["import", str(path), "--output", str(output), "--backbone", "dinov2_vits14"], capsys)
    assert code == 0, events[-1]
    model, card = load_model(output)
    assert card.backbone == "dinov2_vits14"
    assert_same_outputs(model, tensors, source, size=(28, 42))


def test_with_the_dinov2_weights_only_the_trained_tensors_are_kept(tiny_checkpoint, tiny_source, tmp_path,
                                                                   capsys):
    path, tensors = tiny_checkpoint
    weights = tmp_path / "dinov2_tiny_pretrain.pth"
    torch.save(meta_layout(tiny_source.state_dict(), False), weights)
    output = tmp_path / "small.safetensors"
    code, _ = run_cli(["import", str(path), "--output", str(output), "--weights", str(weights)], capsys)
    assert code == 0
    card = read_card(output)
    assert card.adapter_only and card.backbone_weights_sha256
    with safe_open(str(output), framework="pt") as handle:
        assert not [k for k in handle.keys() if k.startswith("backbone.")]
    with pytest.raises(WeightsError):
        load_model(output)
    model, _ = load_model(output, weights=weights)
    assert_same_outputs(model, tensors, tiny_source)

    other = tmp_path / "other_pretrain.pth"
    torch.save(meta_layout(timm_source("vit_small_patch14_dinov2.lvd142m", 99, **TINY_ARCHITECTURE).state_dict(),
                           False), other)
    code, events = run_cli(["import", str(path), "--output", str(tmp_path / "x.safetensors"), "--weights",
                            str(other)], capsys)
    assert code == 2 and "differs from" in events[-1]["message"] and "--weights" in events[-1]["message"]
    assert not (tmp_path / "x.safetensors").exists()


def test_imported_model_segments_a_scene(tiny_checkpoint, tmp_path, capsys):
    path, _ = tiny_checkpoint
    output = tmp_path / "authors.safetensors"
    assert run_cli(["import", str(path), "--output", str(output)], capsys)[0] == 0
    from .raster.conftest import synthetic_pair, write_raster

    optical, dsm = synthetic_pair(120)
    classes = tmp_path / "classes.tif"
    segment(write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm), classes, model=output)
    result = gdal.Open(str(classes)).ReadAsArray()
    assert result.shape == (120, 120) and np.isin(result, range(6)).all()


# -- refused, with what differs -------------------------------------------------------------------------------
def mutated(tensors: dict[str, torch.Tensor], drop=(), add=None, reshape=None) -> dict[str, torch.Tensor]:
    changed = {k: v for k, v in tensors.items() if k not in drop}
    changed.update(add or {})
    for name, shape in (reshape or {}).items():
        changed[name] = torch.zeros(shape)
    return changed


@pytest.mark.parametrize("change, expected", [
    (dict(drop=["decoder.fpn_convs.1.0.weight", "image_encoder.peft_fuse_norms.2.bias"]),
     ["2 missing", "decoder.fpn_convs.1.0.weight", "image_encoder.peft_fuse_norms.2.bias"]),
    (dict(add={"decoder.conv_seg.weight": torch.zeros(6, 64, 1, 1)}), ["1 extra", "decoder.conv_seg.weight"]),
    (dict(reshape={"image_encoder.dual_proj_layers.3.weight": (128, 128, 1, 1)}),
     ["1 with another shape", "image_encoder.dual_proj_layers.3.weight (128, 128, 1, 1) instead of "
                              "(256, 128, 1, 1)"]),
    (dict(drop=["image_encoder.backbone.mask_token"]), ["1 missing", "image_encoder.backbone.mask_token"]),
])
def test_a_different_layout_is_one_error_listing_the_differences(tiny_checkpoint, tmp_path, capsys, change,
                                                                 expected):
    _, tensors = tiny_checkpoint
    path = tmp_path / "changed.pth"
    torch.save(mutated(tensors, **change), path)
    output = tmp_path / "out.safetensors"
    code, events = run_cli(["import", str(path), "--output", str(output)], capsys)
    assert code == 2 and events[-1]["event"] == "error"
    message = events[-1]["message"]
    assert "changed.pth" in message and all(text in message for text in expected), message
    assert not output.exists()


def test_another_backbone_is_named(tiny_checkpoint, tmp_path, capsys):
    path, _ = tiny_checkpoint
    code, events = run_cli(["import", str(path), "--output", str(tmp_path / "o.safetensors"), "--backbone",
                            "dinov2_vits14"], capsys)
    message = events[-1]["message"]
    assert code == 2 and "width 128, 4 blocks" in message and "dinov2_vits14" in message and "--backbone" in message


class TouchOnUnpickle:
    """Unpickling this runs ``Path.touch(marker)``: the code a malicious checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_never_run_and_other_files_are_refused(tiny_checkpoint, tmp_path, capsys):
    _, tensors = tiny_checkpoint
    marker = tmp_path / "executed"
    cases = {"code.pth": {**tensors, "payload": TouchOnUnpickle(marker)}, "list.pth": [1, 2, 3],
             "nested.pth": {"state_dict": tensors}}
    for name, content in cases.items():
        torch.save(content, tmp_path / name)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    for name in [*cases, "text.pth", "absent.pth"]:
        code, events = run_cli(["import", str(tmp_path / name), "--output", str(tmp_path / "o.safetensors")], capsys)
        assert code == 2 and name in events[-1]["message"], events[-1]
    assert not marker.exists() and not (tmp_path / "o.safetensors").exists()
