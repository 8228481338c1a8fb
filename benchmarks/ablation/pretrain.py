"""The frozen backbone every variant shares: a tiny DINOv2-structured ViT pretrained once, on optical images only.

A stand-in for DINOv2 that a CPU can make in minutes: the tiny ViT (the
DINOv2 ViT-S/14 structure shrunk, `mobanet.model.backbone`) is trained with
its whole network on optical-only segmentation of its own synthetic corpus,
then only the ViT is kept and written in timm's layout, as a timm
``.safetensors`` of DINOv2 would be. Variants then load it with
``--weights`` exactly as a user loads DINOv2 offline.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from safetensors.torch import save_file

from mobanet.model.backbone import file_sha256
from mobanet.modelfile import load_model
from mobanet.progress import Progress
from mobanet.train import SceneFiles, TrainOptions, train


@dataclass(frozen=True)
class PretrainRecipe:
    epochs: int = 6
    iterations: int = 100
    batch_size: int = 8
    window: int = 224
    lr: float = 1e-3
    seed: int = 0


def pretrain_backbone(folder: Path, recipe: PretrainRecipe, scenes: list[SceneFiles],
                      validation: list[SceneFiles]) -> dict:
    """Train (or reuse, when ``folder`` already holds the same recipe's result) and save the backbone.

    Returns the record stored beside it: file, SHA-256, recipe and the
    optical-only validation mIoU it reached.
    """
    folder.mkdir(parents=True, exist_ok=True)
    weights, record_path = folder / "tiny_backbone.safetensors", folder / "tiny_backbone.json"
    if weights.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("recipe") == asdict(recipe) and record.get("sha256") == file_sha256(weights):
            return record
    checkpoint = folder / "optical_segmenter.safetensors"
    summary = train(TrainOptions(
        scenes=scenes, validation=validation, output=checkpoint, backbone="tiny", streams="optical",
        finetune_backbone=True, feature_pyramid=False, mcrm="none", epochs=recipe.epochs, iterations=recipe.iterations,
        batch_size=recipe.batch_size, window=recipe.window, lr=recipe.lr, warmup_epochs=1, seed=recipe.seed,
        device="cpu", log_dir=folder / "logs"), Progress("quiet"))
    model, _ = load_model(checkpoint)
    save_file({name: tensor.contiguous() for name, tensor in model.backbone.state_dict().items()}, str(weights))
    record = {"file": str(weights), "sha256": file_sha256(weights), "recipe": asdict(recipe),
              "optical_only_validation_miou": summary["best_miou"], "scenes": len(scenes)}
    record_path.write_text(json.dumps(record, indent=1))
    return record
