"""Per-layer learning-rate scales for the supernet's optimizer (``optimizer.layer_lr_scale``).

Under weight sharing a deep layer is trained by fewer of a step's subnets than a shallow one
(:func:`ovo.distill.layer_uses_per_step`). ``inverse_usage`` gives each block's parameters the
LR ``lr * uses(layer 1) / uses(layer i)``, capped at :data:`LAYER_LR_SCALE_CAP`, so a layer that
is trained half as often takes steps twice as large. It is an LR scale, not a gradient scale,
because AdamW's update does not change with the gradient's scale.

The scales travel as timm's ``lr_scale`` param-group key, which timm's schedulers multiply into
every LR they set; without a scheduler the module applies them once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from timm.optim import param_groups_weight_decay
from torch import nn

from ovo.errors import ConfigError

LayerLRScale = Literal["none", "inverse_usage"]
LAYER_LR_SCALE_CAP = 4.0  # a layer a step almost never trains must not get an unbounded LR


def check_layer_lr_scale(value: str) -> LayerLRScale:
    if value not in ("none", "inverse_usage"):
        raise ConfigError(f"optimizer.layer_lr_scale={value!r}: use none or inverse_usage")
    return value  # type: ignore[return-value]


def inverse_usage_scales(uses: Sequence[float], cap: float = LAYER_LR_SCALE_CAP) -> list[float]:
    """``uses[0] / uses[i]`` per layer, capped at ``cap`` (layers no subnet runs get ``cap``)."""
    return [min(cap, uses[0] / u) if u > 0 else cap for u in uses]


def scaled_param_groups(
    net: nn.Module, weight_decay: float, block_scales: Sequence[float]
) -> list[dict[str, Any]]:
    """timm's weight-decay param groups of ``net`` (no decay on biases, norms and
    ``net.no_weight_decay()``), split so the parameters of ``net.blocks[i]`` carry
    ``lr_scale = block_scales[i]`` and every other parameter ``lr_scale = 1``."""
    skip = net.no_weight_decay() if hasattr(net, "no_weight_decay") else set()
    layer_of = {id(p): i for i, block in enumerate(net.blocks) for p in block.parameters()}
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for group in param_groups_weight_decay(net, weight_decay, no_weight_decay_list=skip):
        for p in group["params"]:
            i = layer_of.get(id(p))
            scale = 1.0 if i is None else float(block_scales[i])
            key = (group["weight_decay"], scale)
            groups.setdefault(key, {"params": [], "weight_decay": key[0], "lr_scale": scale})
            groups[key]["params"].append(p)
    return list(groups.values())
