"""Position embeddings on any patch grid, as DINOv2 computes them, computed once per grid size.

A DINOv2 ViT keeps one position table for its 518 px pretraining grid
(37 x 37 patches, M = 37). Any other window needs the table resampled to its
grid, and how matters: the frozen blocks were trained on Meta's resampling,
so that is what MoBaNet does (``"dinov2"``):

- plain models: bicubic without antialiasing, placed by the scale factor
  ``(n + 0.1) / M`` per axis (Meta's historical offset; the scale factor, not
  the output size, decides where each sample falls);
- register models (reg4): antialiased bicubic to the exact grid, no offset;
- on the 37 x 37 grid itself the table is used as stored.

timm's resampling (antialiased bicubic to the exact grid, ``"timm"``) agrees
with Meta's only for the register models and at 518 px. Models saved before
the choice was recorded in their configuration were trained with it and keep
it, so old files predict as they always did.

The table depends only on the grid and the frozen weights, so `PositionTables`
computes it once per grid size. A trainable table (full fine-tuning) is
resampled on every training pass instead, so its gradient flows.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch.nn import functional as F

INTERPOLATIONS = ("dinov2", "timm")
DINOV2_OFFSET = 0.1  # Meta's plain models; their register models use none
CACHE_SIZE = 8  # grid sizes kept: inference uses one or two, training one


def dinov2_resample(patch_table: torch.Tensor, grid: tuple[int, int], registers: bool) -> torch.Tensor:
    """Meta's DINOv2 resampling of a square patch table ``[1, M*M, C]`` to ``[1, h*w, C]`` (see module docstring)."""
    count, width = patch_table.shape[1:]
    side = round(count ** 0.5)
    if side * side != count:
        raise ValueError(f"a DINOv2 position table is square, this one has {count} patch positions")
    if tuple(grid) == (side, side):
        return patch_table
    square = patch_table.float().reshape(1, side, side, width).permute(0, 3, 1, 2)
    if registers:
        resized = F.interpolate(square, size=tuple(grid), mode="bicubic", antialias=True)
    else:
        scale = tuple((n + DINOV2_OFFSET) / side for n in grid)
        resized = F.interpolate(square, scale_factor=scale, mode="bicubic", antialias=False)
    if tuple(resized.shape[-2:]) != tuple(grid):  # floor(M * (n + 0.1) / M) is n for every grid up to ~10^5
        raise ValueError(f"resampling gave a {tuple(resized.shape[-2:])} grid instead of {tuple(grid)}")
    return resized.permute(0, 2, 3, 1).reshape(1, -1, width).to(patch_table.dtype)


def resample_table(backbone: VisionTransformer, grid: tuple[int, int], interpolation: str) -> torch.Tensor:
    """The backbone's position table on ``grid``: ``[1, h*w, C]``, or ``[1, 1 + h*w, C]`` with a class slot."""
    table = backbone.pos_embed
    class_slots = 0 if backbone.no_embed_class else backbone.num_prefix_tokens
    if interpolation == "timm":
        return resample_abs_pos_embed(table, new_size=list(grid), old_size=list(backbone.patch_embed.grid_size),
                                      num_prefix_tokens=class_slots)
    if interpolation != "dinov2":
        raise ValueError(f"unknown position-embedding interpolation {interpolation!r}")
    patches = dinov2_resample(table[:, class_slots:], grid, registers=backbone.num_reg_tokens > 0)
    return torch.cat([table[:, :class_slots], patches], dim=1) if class_slots else patches


class PositionTables:
    """The position table of each patch grid a model meets, resampled once (see module docstring)."""

    def __init__(self, interpolation: str = "dinov2", capacity: int = CACHE_SIZE):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown position-embedding interpolation {interpolation!r}")
        self.interpolation = interpolation
        self.capacity = capacity
        self._tables: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()
        self._source: tuple | None = None  # which stored table the cached ones were resampled from

    def __call__(self, backbone: VisionTransformer, grid: tuple[int, int]) -> torch.Tensor:
        table = backbone.pos_embed
        if table.requires_grad and torch.is_grad_enabled():
            return resample_table(backbone, grid, self.interpolation)
        # a new device, dtype or loaded weights (in-place copies bump _version) invalidate the cache
        source = (table.data_ptr(), table._version, table.device, table.dtype)
        if source != self._source:
            self._tables.clear()
            self._source = source
        grid = (int(grid[0]), int(grid[1]))
        if grid not in self._tables:
            # ordinary tensors, even when first asked for under inference_mode: training reuses them
            with torch.inference_mode(False), torch.no_grad():
                self._tables[grid] = resample_table(backbone, grid, self.interpolation).detach()
            if len(self._tables) > self.capacity:
                self._tables.popitem(last=False)
        self._tables.move_to_end(grid)
        return self._tables[grid]

    def cached_grids(self) -> list[tuple[int, int]]:
        """Grids whose table is kept, oldest first."""
        return list(self._tables)
