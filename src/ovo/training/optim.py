"""The supernet's optimizer and scheduler: timm's factories, the LR scaled to the global batch,
and per-layer learning-rate scales (``optimizer.layer_lr_scale``).

Under weight sharing a deep layer is trained by fewer of a step's subnets than a shallow one
(:func:`ovo.training.distill.layer_uses_per_step`). ``inverse_usage`` gives each block's parameters the
LR ``lr * uses(layer 1) / uses(layer i)``, capped at :data:`LAYER_LR_SCALE_CAP`, so a layer that
is trained half as often takes steps twice as large. It is an LR scale, not a gradient scale,
because AdamW's update does not change with the gradient's scale.

The scales travel as timm's ``lr_scale`` param-group key, which timm's schedulers multiply into
every LR they set; without a scheduler the module applies them once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from timm.scheduler import create_scheduler_v2
from torch import nn

from ovo.errors import ConfigError

DEFAULT_OPTIMIZER = {"opt": "adamw", "lr": 5e-4, "weight_decay": 0.05}

LayerLRScale = Literal["none", "inverse_usage"]
LAYER_LR_SCALE_CAP = 4.0  # a layer a step almost never trains must not get an unbounded LR


def check_layer_lr_scale(value: str, fixed_arch: bool = False) -> LayerLRScale:
    """The checked ``optimizer.layer_lr_scale``; refused with a fixed arch, which trains every
    layer every step."""
    if value not in ("none", "inverse_usage"):
        raise ConfigError(f"optimizer.layer_lr_scale={value!r}: use none or inverse_usage")
    if value != "none" and fixed_arch:
        raise ConfigError(
            f"optimizer.layer_lr_scale={value} scales the supernet's layers by how often the "
            "sampling trains them; fixed_arch trains every layer every step: leave it at none"
        )
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


def build_optimizer(
    net: nn.Module,
    cfg: Mapping[str, Any] | None,
    global_batch_size: int,
    lr_base_batch_size: int | None,
    layer_uses: Sequence[float] | None,
) -> torch.optim.Optimizer:
    """timm's optimizer over ``net`` from the ``optimizer`` config, its LR scaled to
    ``global_batch_size / lr_base_batch_size`` (unscaled when that is unset). ``layer_uses``:
    each block's expected uses per step under the sampling rule, for ``layer_lr_scale``
    (``None``: a fixed arch, which trains every layer every step)."""
    opt_cfg = dict(cfg or DEFAULT_OPTIMIZER)
    lr = float(opt_cfg.pop("lr"))
    if lr_base_batch_size:
        lr *= global_batch_size / lr_base_batch_size
    rule = check_layer_lr_scale(opt_cfg.pop("layer_lr_scale", "none"), layer_uses is None)
    if rule == "none" or layer_uses is None:
        return create_optimizer_v2(net, lr=lr, **opt_cfg)
    weight_decay = float(opt_cfg.get("weight_decay", 0.0))
    groups = scaled_param_groups(net, weight_decay, inverse_usage_scales(layer_uses))
    return create_optimizer_v2(groups, lr=lr, **opt_cfg)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: Mapping[str, Any] | None,
    epochs: int,
    updates_per_epoch: int,
) -> Any | None:
    """timm's scheduler, stepped per optimizer update; ``None`` without a scheduler config."""
    if not cfg:
        return None
    scheduler, _ = create_scheduler_v2(
        optimizer,
        num_epochs=epochs,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
        **dict(cfg),
    )
    return scheduler
