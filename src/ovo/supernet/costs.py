"""Closed-form parameter and FLOP counts of a subnet, as exported to timm.

Conventions:
- ``params`` equals ``sum(p.numel() for p in exported.parameters())`` exactly.
- ``macs`` counts multiply-accumulates of the matrix products only (patch-embedding conv, every
  linear layer, and the two attention products ``q @ k^T`` and ``attn @ v``), per image. It
  equals ``FlopCounterMode`` total / 2 on the exported model for one image; norms, softmax,
  GELU, residual adds and biases are not counted (as ``FlopCounterMode`` and the NAS literature).
  ``flops`` is an alias of ``macs`` (AutoFormer and most NAS papers report MACs as "FLOPs").

They are pure integer arithmetic over the layers, a few microseconds per arch, so a search can
check constraints on millions of candidates before evaluating any.
"""

from __future__ import annotations

from dataclasses import dataclass

from ovo.space import Arch, mlp_hidden
from ovo.supernet.config import ViTConfig


@dataclass(frozen=True)
class CostModel:
    """Parameter/MAC formulas for subnets of one model config (``head_dim`` from the space)."""

    cfg: ViTConfig
    head_dim: int = 64

    def params(self, arch: Arch) -> int:
        cfg, e, hd = self.cfg, arch.embed_dim, self.head_dim
        patch = cfg.in_chans * cfg.patch_size**2
        total = e * patch + e  # patch embedding conv + bias
        total += e + cfg.num_tokens * e  # cls token + position embedding
        for h, r in zip(arch.num_heads, arch.mlp_ratio):
            a = h * hd  # attention width
            m = mlp_hidden(e, r)
            total += 4 * e  # norm1, norm2 (weight + bias)
            total += 3 * a * e + 3 * a  # qkv
            total += a * e + e  # proj
            total += 2 * m * e + m + e  # fc1 + fc2
        total += 2 * e  # final norm (or fc_norm)
        total += e * cfg.num_classes + cfg.num_classes  # head
        return total

    def macs(self, arch: Arch) -> int:
        cfg, e, hd = self.cfg, arch.embed_dim, self.head_dim
        n, t = cfg.num_patches, cfg.num_tokens
        total = n * e * cfg.in_chans * cfg.patch_size**2
        for h, r in zip(arch.num_heads, arch.mlp_ratio):
            a = h * hd
            m = mlp_hidden(e, r)
            total += t * e * 3 * a  # qkv
            total += 2 * t * t * a  # q @ k^T and attn @ v
            total += t * a * e  # proj
            total += 2 * t * e * m  # fc1 + fc2
        total += e * cfg.num_classes
        return total

    flops = macs
