"""Model settings that are not part of the search space (input, classes, pooling, regularisation)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal


@dataclass(frozen=True)
class ViTConfig:
    """Settings shared by the supernet and every subnet exported from it.

    ``global_pool='token'`` classifies the cls token after the final norm (DeiT/AutoFormer);
    ``'avg'`` averages the patch tokens and normalises the pooled vector (timm's ``fc_norm``).
    """

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    global_pool: Literal["token", "avg"] = "token"
    drop_path_rate: float = 0.1
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size={self.img_size} is not a multiple of patch_size={self.patch_size}"
            )
        if self.global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {self.global_pool!r}")
        if self.num_classes < 1 or self.in_chans < 1:
            raise ValueError("num_classes and in_chans must be positive")

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        """Patches plus the cls token."""
        return self.num_patches + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViTConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names - {"_target_"}
        if unknown:
            raise ValueError(f"unknown model setting(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{k: v for k, v in data.items() if k in names})
