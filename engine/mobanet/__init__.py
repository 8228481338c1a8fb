"""MoBaNet engine: multimodal (optical + DSM) segmentation on a frozen vision foundation model."""

__version__ = "0.1.0"
