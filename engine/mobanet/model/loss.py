"""Training loss: cross-entropy on the main head plus hard-pixel auxiliary supervision.

    loss = CE(main) + aux_weight * (CE(aux_optical, hard) + CE(aux_dsm, hard))

``hard`` is the label with every pixel the main head already gets right set
to ignore, so the single-modality heads only learn where the fused
prediction still fails. Variants without auxiliary heads use CE(main) only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mobanet.classes import IGNORE_INDEX


class MoBaNetLoss(nn.Module):
    def __init__(self, aux_weight: float = 0.01, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.aux_weight = aux_weight
        self.ignore_index = ignore_index

    def _cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean CE over labelled pixels; zero (still differentiable) when none is labelled."""
        if not bool((target != self.ignore_index).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index)

    def forward(self, outputs: dict, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``outputs`` from `MoBaNet.forward_train`, ``target`` [B, H, W] class indices (255 ignored)."""
        logits = outputs["logits"]
        target = target.to(device=logits.device, dtype=torch.long)
        main = self._cross_entropy(logits, target)
        parts = {"main": float(main.detach())}
        total = main
        aux_logits = {name: outputs.get(name) for name in ("aux_optical", "aux_dsm")}
        if any(v is not None for v in aux_logits.values()):
            hard = target.masked_fill(logits.detach().argmax(dim=1) == target, self.ignore_index)
            for name, aux in aux_logits.items():
                if aux is None:
                    continue
                term = self._cross_entropy(aux, hard)
                parts[name] = float(term.detach())
                total = total + self.aux_weight * term
        parts["loss"] = float(total.detach())
        return total, parts
