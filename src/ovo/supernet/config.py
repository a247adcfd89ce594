"""Model settings that are not part of the search space (input, classes, pooling, regularisation)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ovo.errors import ConfigError
from ovo.settings import settings_dict, settings_from

# the settings that fix every tensor shape of a subnet, and so its closed-form costs
SHAPE_KEYS = ("img_size", "patch_size", "in_chans", "num_classes")


@dataclass(frozen=True)
class ViTConfig:
    """Settings shared by the supernet and every subnet exported from it (the ``model`` config).

    ``global_pool='token'`` classifies the cls token after the final norm (DeiT/AutoFormer);
    ``'avg'`` averages the patch tokens and normalises the pooled vector (timm's ``fc_norm``).
    ``per_depth_norm``: one final norm per depth choice instead of one that every depth shares
    (the head stays shared); a subnet uses, and exports, the norm of its own depth.
    """

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    global_pool: Literal["token", "avg"] = "token"
    drop_path_rate: float = 0.1
    norm_eps: float = 1e-6
    per_depth_norm: bool = False

    def __post_init__(self) -> None:
        for key in SHAPE_KEYS:
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be positive")
        if self.img_size % self.patch_size:
            raise ConfigError(
                f"model.img_size={self.img_size} is not a multiple of model.patch_size="
                f"{self.patch_size}; pick a patch size that divides the image size"
            )
        if self.global_pool not in ("token", "avg"):
            raise ConfigError(f"model.global_pool={self.global_pool!r}: use token or avg")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"model.drop_path_rate={self.drop_path_rate} must be in [0, 1)")
        if self.norm_eps <= 0:
            raise ConfigError(f"model.norm_eps={self.norm_eps} must be positive")

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        """Patches plus the cls token."""
        return self.num_patches + 1

    def to_dict(self) -> dict[str, Any]:
        return settings_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViTConfig:
        return settings_from(cls, data, "model")
