"""Export a subnet into a stock timm ``VisionTransformer``, save it, and load it back.

The saved form is two files: ``model.safetensors`` (weights, no pickle) and ``config.json``.
Format 2 is timm's Hub format (:mod:`ovo.export.hub`: ``architecture``, ``model_args``,
``pretrained_cfg``; loads with ``timm.create_model("local-dir:...")`` after ``import ovo``) with
ovo's keys beside timm's; format 1 had ovo's keys only (arch, model settings, head dim).
:func:`load_exported` reads both; ovo's supernet code is not needed to use an exported model.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from timm.layers import Attention
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from ovo.space import Arch, mlp_hidden
from ovo.supernet.config import ViTConfig

FORMAT_VERSION = 2  # 1: ovo's keys only; 2: timm's hub format with ovo's keys beside


class FixedHeadDimAttention(Attention):
    """timm ``Attention`` whose q/k/v width is ``num_heads * head_dim`` regardless of ``dim``.

    timm's ``Block`` builds its attention from a class (not a partial), so the head dim is a
    class attribute; :func:`attention_class` makes one subclass per head dim.
    """

    head_dim_override: int = 64

    def __init__(self, dim: int, num_heads: int = 8, **kwargs: Any) -> None:
        kwargs.pop("attn_head_dim", None)
        super().__init__(dim, num_heads, attn_head_dim=self.head_dim_override, **kwargs)


@functools.cache
def attention_class(head_dim: int) -> type[FixedHeadDimAttention]:
    if head_dim == FixedHeadDimAttention.head_dim_override:
        return FixedHeadDimAttention
    return type(
        f"HeadDim{head_dim}Attention", (FixedHeadDimAttention,), {"head_dim_override": head_dim}
    )


def build_timm_vit(
    arch: Arch, cfg: ViTConfig, head_dim: int = 64, drop_path_rates: list[float] | None = None
) -> VisionTransformer:
    """A timm ``VisionTransformer`` with ``arch``'s per-layer heads and MLP ratios (uninitialised)."""
    norm_layer = functools.partial(nn.LayerNorm, eps=cfg.norm_eps)
    model = VisionTransformer(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_chans=cfg.in_chans,
        num_classes=cfg.num_classes,
        global_pool=cfg.global_pool,
        embed_dim=arch.embed_dim,
        depth=arch.depth,
        num_heads=arch.num_heads[0],
        mlp_ratio=arch.mlp_ratio[0],
        qkv_bias=True,
        class_token=True,
        weight_init="skip",
        attn_layer=attention_class(head_dim),
        norm_layer=norm_layer,
    )
    rates = drop_path_rates or [0.0] * arch.depth
    # timm's constructor takes one head count / ratio; per-layer choices need per-layer Blocks.
    model.blocks = nn.Sequential(
        *[
            Block(
                arch.embed_dim,
                h,
                mlp_ratio=r,
                qkv_bias=True,
                drop_path=rates[i],
                norm_layer=norm_layer,
                attn_layer=attention_class(head_dim),
            )
            for i, (h, r) in enumerate(zip(arch.num_heads, arch.mlp_ratio))
        ]
    )
    return model


def subnet_state_dict(supernet: nn.Module, arch: Arch) -> dict[str, torch.Tensor]:
    """The weights ``arch`` uses, renamed and laid out as timm's ``VisionTransformer`` expects."""
    e, hd = arch.embed_dim, supernet.space.head_dim
    ncls = supernet.cfg.num_classes
    sd = {k: v.detach() for k, v in supernet.state_dict().items()}
    out: dict[str, torch.Tensor] = {
        "cls_token": sd["cls_token"][:, :, :e],
        "pos_embed": sd["pos_embed"][:, :, :e],
        "patch_embed.proj.weight": sd["patch_embed.proj.weight"][:e],
        "patch_embed.proj.bias": sd["patch_embed.proj.bias"][:e],
        "head.weight": sd["head.weight"][:ncls, :e],
        "head.bias": sd["head.bias"][:ncls],
    }
    norm = "fc_norm" if supernet.cfg.global_pool == "avg" else "norm"
    src_norm = supernet.norm_key(arch.depth)
    out[f"{norm}.weight"] = sd[f"{src_norm}.weight"][:e]
    out[f"{norm}.bias"] = sd[f"{src_norm}.bias"][:e]
    for i, (h, r) in enumerate(zip(arch.num_heads, arch.mlp_ratio)):
        src, dst = f"blocks.{i}.", f"blocks.{i}."
        a, m = h * hd, mlp_hidden(e, r)
        for n in ("norm1", "norm2"):
            out[dst + f"{n}.weight"] = sd[src + f"{n}.weight"][:e]
            out[dst + f"{n}.bias"] = sd[src + f"{n}.bias"][:e]
        # head-major [h, 3, hd] rows -> timm's [3, h, hd] rows
        qkv_w = sd[src + "attn.qkv.weight"][: 3 * a, :e]
        qkv_b = sd[src + "attn.qkv.bias"][: 3 * a]
        out[dst + "attn.qkv.weight"] = qkv_w.reshape(h, 3, hd, e).transpose(0, 1).reshape(3 * a, e)
        out[dst + "attn.qkv.bias"] = qkv_b.reshape(h, 3, hd).transpose(0, 1).reshape(3 * a)
        out[dst + "attn.proj.weight"] = sd[src + "attn.proj.weight"][:e, :a]
        out[dst + "attn.proj.bias"] = sd[src + "attn.proj.bias"][:e]
        out[dst + "mlp.fc1.weight"] = sd[src + "mlp.fc1.weight"][:m, :e]
        out[dst + "mlp.fc1.bias"] = sd[src + "mlp.fc1.bias"][:m]
        out[dst + "mlp.fc2.weight"] = sd[src + "mlp.fc2.weight"][:e, :m]
        out[dst + "mlp.fc2.bias"] = sd[src + "mlp.fc2.bias"][:e]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def export_subnet(supernet: nn.Module, arch: Arch) -> VisionTransformer:
    """A stock timm ``VisionTransformer`` holding a copy of ``arch``'s weights from ``supernet``."""
    supernet.check_arch(arch)
    with torch.device("meta"):  # no init work: every tensor is replaced by the copy below
        model = build_timm_vit(
            arch, supernet.cfg, supernet.space.head_dim, supernet.drop_path_rates[: arch.depth]
        )
    model.load_state_dict(subnet_state_dict(supernet, arch), strict=True, assign=True)
    return model.train(supernet.training)


def exported_config(arch: Arch, cfg: ViTConfig, head_dim: int, **extra: Any) -> dict[str, Any]:
    return {
        "format": "ovo-timm-vit",
        "format_version": FORMAT_VERSION,
        "arch": arch.to_dict(),
        "model": cfg.to_dict(),
        "head_dim": head_dim,
        **extra,
    }


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> VisionTransformer:
    """Rebuild the timm model saved by :func:`save_exported` (safe: safetensors + JSON only)."""
    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    for f in (cfg_file, weights):
        if not f.is_file():
            raise FileNotFoundError(
                f"{f} is missing: an exported model directory holds "
                "config.json and model.safetensors (made by `python -m ovo.export`)"
            )
    try:
        meta = json.loads(cfg_file.read_text())
        version = int(meta.get("format_version", 1))
        arch, cfg = Arch.from_dict(meta["arch"]), ViTConfig.from_dict(meta["model"])
        head_dim = int(meta["head_dim"])
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{cfg_file} is not an ovo export config: {err}") from err
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{cfg_file} is export format {version}; this ovo reads up to {FORMAT_VERSION}: "
            "upgrade ovo (or load it with timm.create_model('local-dir:...') after import ovo)"
        )
    with torch.device("meta"):
        model = build_timm_vit(arch, cfg, head_dim)
    model.load_state_dict(load_file(str(weights), device=str(device)), strict=True, assign=True)
    if "pretrained_cfg" in meta:  # format 2: timm's preprocessing (resolve_data_config reads it)
        pre = dict(meta["pretrained_cfg"])
        for key in ("input_size", "test_input_size", "min_input_size"):  # JSON lists, as timm
            if isinstance(pre.get(key), list):
                pre[key] = tuple(pre[key])
        model.pretrained_cfg = model.default_cfg = pre
    return model.eval()
