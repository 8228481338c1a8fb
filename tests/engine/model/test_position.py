"""Position embeddings: DINOv2's own resampling on every DINOv2 backbone, computed once per grid size, and
files saved before the choice was recorded keep timm's resampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mobanet.card import ModelCard
from mobanet.model import MoBaNetConfig, MoBaNetLoss, build_model
from mobanet.model.backbone import (
    ALIASES,
    TINY_ARCHITECTURE,
    BackboneSpec,
    backbone_tokens,
    create_backbone,
    resolve_backbone,
)
from mobanet.model.position import PositionTables, resample_table
from mobanet.modelfile import load_model, read_card, save_model
from mobanet.resources import default_model_path

TINY_REG4 = BackboneSpec("tiny-reg4", ALIASES["dinov2_vits14_reg4"], dict(TINY_ARCHITECTURE))
GRIDS = [(16, 16), (19, 19), (19, 13), (13, 19), (37, 37), (45, 52), (4, 40)]  # 224, 266, 266x182, .., 518, ..


# -- an independent implementation of Meta's formula (numpy, float64, written from the definitions) ----------
def cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter ``a``."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def bicubic_matrix(source: int, target: int, scale: float) -> np.ndarray:
    """Rows: the weights of the source samples for each target sample, half-pixel centres, placed by ``scale``
    (target/source), edges repeated; no antialiasing (a = -0.75, as torch's plain bicubic)."""
    matrix = np.zeros((target, source))
    for i in range(target):
        x = (i + 0.5) / scale - 0.5
        base = math.floor(x)
        for j in range(base - 1, base + 3):
            matrix[i, min(max(j, 0), source - 1)] += cubic(np.array(x - j), -0.75)
    return matrix


def antialiased_matrix(source: int, target: int) -> np.ndarray:
    """PIL-style antialiased bicubic (a = -0.5): the kernel is stretched by the reduction factor when
    shrinking, taps outside the source are dropped and the weights renormalised."""
    ratio = source / target
    stretch = max(ratio, 1.0)
    matrix = np.zeros((target, source))
    for i in range(target):
        centre = (i + 0.5) * ratio
        low, high = max(int(centre - 2 * stretch + 0.5), 0), min(int(centre + 2 * stretch + 0.5), source)
        taps = np.arange(low, high)
        weights = cubic((taps - centre + 0.5) / stretch, -0.5)
        matrix[i, taps] = weights / weights.sum()
    return matrix


def dinov2_reference(patch_table: np.ndarray, grid: tuple[int, int], registers: bool) -> np.ndarray:
    """Meta's DINOv2 position interpolation of an ``[M*M, C]`` table: plain models bicubic placed by the
    scale (n + 0.1) / M, register models antialiased to the exact size, the 37 x 37 grid as stored."""
    side = round(math.sqrt(patch_table.shape[0]))
    square = patch_table.reshape(side, side, -1)
    if tuple(grid) == (side, side):
        return patch_table
    if registers:
        rows, cols = antialiased_matrix(side, grid[0]), antialiased_matrix(side, grid[1])
    else:
        rows = bicubic_matrix(side, grid[0], (grid[0] + 0.1) / side)
        cols = bicubic_matrix(side, grid[1], (grid[1] + 0.1) / side)
    return np.einsum("ia,jb,abc->ijc", rows, cols, square, optimize=True).reshape(grid[0] * grid[1], -1)


def expected_table(backbone, grid: tuple[int, int]) -> np.ndarray:
    """The whole table (class slot first when the layout has one) by the reference formula."""
    table = backbone.pos_embed.detach().double().numpy()[0]
    registers = backbone.num_reg_tokens > 0
    if registers:  # timm folds the class position into the class token: the table holds patches only
        return dinov2_reference(table, grid, True)
    return np.concatenate([table[:1], dinov2_reference(table[1:], grid, False)])


def backbone_with_random_table(name: str):
    """The named backbone's real layout (built on the meta device) with a random position table."""
    with torch.device("meta"):
        backbone = create_backbone(resolve_backbone(name), random_init=True)
    shape = backbone.pos_embed.shape
    backbone.pos_embed = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(len(name))),
                                            requires_grad=False)
    return backbone


# -- the formula -------------------------------------------------------------------------------------------
def test_independent_formula_reproduces_known_resampling_facts():
    """The reference is right where the answer is known without it: weights sum to one, a constant stays
    constant, and the offset puts samples where (n + 0.1) / M says rather than where the size says."""
    for source, target in [(37, 19), (37, 45)]:
        for matrix in (bicubic_matrix(source, target, (target + 0.1) / source), antialiased_matrix(source, target)):
            np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-12)
    by_scale, by_size = bicubic_matrix(37, 19, 19.1 / 37), bicubic_matrix(37, 19, 19 / 37)
    assert np.abs(by_scale - by_size).max() > 0.01


@pytest.mark.parametrize("name", [*ALIASES, "tiny"])
def test_every_dinov2_backbone_gets_metas_table_on_every_grid(name):
    backbone = backbone_with_random_table(name)
    assert tuple(backbone.patch_embed.grid_size) == (37, 37)
    assert (backbone.num_reg_tokens > 0) == name.endswith("_reg4")
    for grid in GRIDS:
        ours = resample_table(backbone, grid, "dinov2")[0].double().numpy()
        np.testing.assert_allclose(ours, expected_table(backbone, grid), atol=5e-5, rtol=0, err_msg=str(grid))


def test_dinov2_and_timm_resampling_differ_for_plain_models_only():
    """What made the issue: timm's antialiased resampling is Meta's only for register models and at 518 px."""
    plain, registers = backbone_with_random_table("dinov2_vits14"), backbone_with_random_table("dinov2_vits14_reg4")
    gap = (resample_table(plain, (19, 19), "dinov2") - resample_table(plain, (19, 19), "timm")).abs().max()
    assert gap > 0.05
    torch.testing.assert_close(resample_table(registers, (19, 13), "dinov2"),
                               resample_table(registers, (19, 13), "timm"), atol=1e-6, rtol=0)
    assert torch.equal(resample_table(plain, (37, 37), "dinov2"), resample_table(plain, (37, 37), "timm"))


def test_token_layout_matches_timm_for_plain_and_register_models():
    """`backbone_tokens` places class, register and patch tokens as timm does; with timm's table it is
    exactly timm's own `_pos_embed` (what files saved before this change were trained with)."""
    for spec in (resolve_backbone("tiny"), TINY_REG4):
        torch.manual_seed(0)
        backbone = create_backbone(spec, random_init=True)
        grid = torch.randn(2, 19, 13, backbone.embed_dim)
        with torch.no_grad():
            ours = backbone_tokens(backbone, grid, resample_table(backbone, (19, 13), "timm"))
            theirs = backbone.norm_pre(backbone.patch_drop(backbone._pos_embed(grid)))
        assert ours.shape[1] == backbone.num_prefix_tokens + 19 * 13
        assert torch.equal(ours, theirs), spec.name


# -- computed once per grid --------------------------------------------------------------------------------
def test_table_is_computed_once_per_grid_and_follows_new_weights(inputs):
    torch.manual_seed(0)
    model = build_model(MoBaNetConfig())
    tables = model.position_tables
    with torch.no_grad():
        model(*inputs(2, 70, 70))
        first = tables(model.backbone, (5, 5))
        model(*inputs(1, 70, 70, seed=1))
        model(*inputs(1, 70, 42))
    assert tables.cached_grids() == [(5, 5), (5, 3)]
    assert tables(model.backbone, (5, 5)) is first  # reused, not resampled every forward
    with torch.no_grad():
        model.backbone.pos_embed.mul_(2.0)  # as load_state_dict does: an in-place copy into the parameter
    second = tables(model.backbone, (5, 5))
    assert second is not first and torch.allclose(second[:, 1:], 2 * first[:, 1:])
    model.double()
    assert tables(model.backbone, (5, 5)).dtype == torch.float64


def test_cache_stays_small():
    tables = PositionTables("dinov2", capacity=3)
    backbone = backbone_with_random_table("tiny")
    for side in range(10, 16):
        tables(backbone, (side, side))
    assert tables.cached_grids() == [(13, 13), (14, 14), (15, 15)]


def test_training_after_inference_mode_and_full_finetuning_get_gradients(inputs):
    """A table first made under inference_mode is an ordinary tensor that training can use; a trainable
    table (full fine-tuning) is resampled every pass so its gradient flows."""
    torch.manual_seed(0)
    for finetune in (False, True):
        model = build_model(MoBaNetConfig(finetune_backbone=finetune))
        with torch.inference_mode():
            model(*inputs(1, 56, 56))
        assert not model.position_tables(model.backbone, (4, 4)).is_inference()
        model.train()
        loss, _ = MoBaNetLoss()(model.forward_train(*inputs(2, 56, 56)), torch.randint(0, 6, (2, 56, 56)))
        loss.backward()
        assert (model.backbone.pos_embed.grad is not None) == finetune
        assert model.dsm_patch_embed.proj.weight.grad is not None


# -- compatibility ------------------------------------------------------------------------------------------
def test_new_models_record_dinov2_and_files_without_the_field_keep_timm(tmp_path, inputs):
    torch.manual_seed(0)
    model = build_model(MoBaNetConfig())
    assert model.config.pos_embed_interpolation == "dinov2"
    path = tmp_path / "new.safetensors"
    save_model(path, model, ModelCard(), full=True)
    assert read_card(path).config["pos_embed_interpolation"] == "dinov2"
    assert MoBaNetConfig.from_dict({"backbone": "tiny"}).pos_embed_interpolation == "timm"

    legacy = model.config.to_dict()
    del legacy["pos_embed_interpolation"]
    loaded = build_model(MoBaNetConfig.from_dict(legacy))
    loaded.load_state_dict(model.state_dict())
    with torch.no_grad():
        optical, dsm = inputs(1, 70, 42)
        old_tokens = model.backbone._pos_embed(model.backbone.patch_embed(optical))
        assert torch.equal(backbone_tokens(loaded.backbone, loaded.backbone.patch_embed(optical),
                                           loaded.position_tables(loaded.backbone, (5, 3))), old_tokens)
        assert not torch.equal(model(optical, dsm), loaded(optical, dsm))


def test_embedded_default_model_keeps_the_resampling_it_was_trained_with():
    """Retrained with DINOv2's resampling (make default-model), recorded in its card and used on loading."""
    model, card = load_model(default_model_path())
    assert card.config["pos_embed_interpolation"] == model.config.pos_embed_interpolation == "dinov2"
