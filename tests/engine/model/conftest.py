"""Shared fixtures for the MoBaNet model tests: small inputs and a Meta-layout DINOv2 checkpoint."""

from __future__ import annotations

import pytest
import timm
import torch

from mobanet.model.backbone import TINY_ARCHITECTURE


def random_inputs(batch: int = 2, height: int = 97, width: int = 131,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, height, width, generator=generator),
            torch.randn(batch, 1, height, width, generator=generator))


@pytest.fixture
def inputs():
    """``inputs(batch, height, width, seed)`` -> normalised optical [B,3,H,W] and DSM [B,1,H,W]."""
    return random_inputs


def meta_layout(state: dict[str, torch.Tensor], registers: bool) -> dict[str, torch.Tensor]:
    """Rename a timm DINOv2 state dict the way Meta's original checkpoints are laid out.

    Meta files carry ``mask_token``; with registers they keep ``register_tokens``
    apart and their ``pos_embed`` still has a class-token slot that timm folds
    into ``cls_token`` (timm's ``_convert_dinov2`` undoes exactly this).
    """
    out = {k: v.clone() for k, v in state.items()}
    width = out["cls_token"].shape[-1]
    out["mask_token"] = torch.zeros(1, width)
    if registers:
        out["register_tokens"] = out.pop("reg_token")
        pos = out.pop("pos_embed")
        out["pos_embed"] = torch.cat([torch.zeros(1, 1, width), pos], dim=1)
    return out


@pytest.fixture(name="meta_layout")
def meta_layout_fixture():
    """`meta_layout(state, registers)`: a timm DINOv2 state dict renamed to Meta's layout."""
    return meta_layout


@pytest.fixture(scope="session")
def tiny_source() -> torch.nn.Module:
    """A randomly initialised tiny DINOv2-structure ViT at Meta's 518 px grid (37x37 + 1 tokens)."""
    torch.manual_seed(123)
    model = timm.create_model("vit_small_patch14_dinov2.lvd142m", pretrained=False, num_classes=0,
                              **TINY_ARCHITECTURE)
    with torch.no_grad():  # LayerScale starts at 1e-5; make the blocks matter for the comparison
        for name, param in model.named_parameters():
            if name.endswith("gamma"):
                param.fill_(0.5)
    return model.eval()


@pytest.fixture(scope="session")
def meta_weights(tiny_source, tmp_path_factory) -> str:
    """The tiny source written as an original-layout ``.pth`` (what `--weights` gets on offline machines)."""
    state = meta_layout(tiny_source.state_dict(), registers=False)
    assert state["pos_embed"].shape == (1, 37 * 37 + 1, TINY_ARCHITECTURE["embed_dim"])
    path = tmp_path_factory.mktemp("weights") / "dinov2_tiny_pretrain.pth"
    torch.save(state, path)
    return str(path)
