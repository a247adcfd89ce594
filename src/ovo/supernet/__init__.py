"""The weight-sharing ViT supernet: elastic layers, closed-form costs, model settings."""

from ovo.supernet.config import ViTConfig
from ovo.supernet.costs import CostModel
from ovo.supernet.model import SuperViT

__all__ = ["CostModel", "SuperViT", "ViTConfig"]
