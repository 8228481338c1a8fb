"""Ablation benchmark on synthetic scenes (`make bench-ablation`): which MCRM, auxiliary loss and decoder defaults.

Protocol, closer to the paper's than training every variant from scratch:

1. `pretrain`: a tiny DINOv2-structured ViT is trained ONCE on its own
   synthetic corpus (seeds no variant trains or is tested on), on optical-only
   segmentation (DINOv2 saw only RGB), and saved as a timm-layout
   ``.safetensors``;
2. `variants`: every variant loads it through the real ``--weights`` path
   (``backbone="tiny"``), frozen, and trains only its trainable parts with the
   same budget, once per seed;
3. `scoring`: each model is scored on held-out scenes (seeds never trained
   on) with both inputs, without the DSM, without the optical image, and with
   DSM gaps (nodata holes and a strip outside the DSM's coverage) predicted
   from the optical image; every input condition goes through
   `mobanet.raster` exactly as `mobanet segment` reads it;
4. `report`: mean ± std over seeds, the decisions the numbers support, and
   benchmarks/results/ablation.md + .json.
"""
