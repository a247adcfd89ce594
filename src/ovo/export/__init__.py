"""Export subnets to stock timm ``VisionTransformer`` models (``python -m ovo.export`` is the CLI)."""

from ovo.export.elastic import load_slice
from ovo.export.hub import save_exported
from ovo.export.timm_vit import (
    FixedHeadDimAttention,
    attention_class,
    build_timm_vit,
    export_subnet,
    load_exported,
    subnet_state_dict,
)

__all__ = [
    "FixedHeadDimAttention",
    "attention_class",
    "build_timm_vit",
    "export_subnet",
    "load_exported",
    "load_slice",
    "save_exported",
    "subnet_state_dict",
]
