"""MoBaNet, the network: frozen ViT backbone, CPIA, DGFM, UPerNet, MCRM and the training loss."""

from mobanet.model.backbone import BackboneSpec, resolve_backbone
from mobanet.model.loss import MoBaNetLoss
from mobanet.model.masking import mask_modalities
from mobanet.model.mobanet import MoBaNet, MoBaNetConfig, build_model
from mobanet.model.profiles import PROFILES, Profile

__all__ = ["PROFILES", "BackboneSpec", "MoBaNet", "MoBaNetConfig", "MoBaNetLoss", "Profile", "build_model",
           "mask_modalities", "resolve_backbone"]
