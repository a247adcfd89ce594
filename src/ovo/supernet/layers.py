"""Elastic layers: parameters allocated at the largest choice, each forward uses leading slices.

Every layer takes the sizes it should run at as forward arguments; no layer stores a "current"
size, so two subnets can run back to back (teacher then student) in one step.

Slicing notes (why the layouts are what they are):
- Slices are taken only on leading rows/columns, so they are strided views that BLAS consumes
  directly (leading dimension = the full width); nothing is copied per step.
- When a layer runs at full size the parameter is used as is: no slice node in autograd, so no
  full-size zero gradient buffer is allocated for it.
- The fused q/k/v projection stores rows head-major ``[head, (q|k|v), head_dim]``, so the first
  ``h`` heads' q, k and v rows are one contiguous block and weight and bias are sliced by the
  same rows (AutoFormer slices its weight interleaved but its bias contiguously, its issue 121).
  Export reorders those rows into timm's ``[(q|k|v), head, head_dim]`` layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import Tensor, nn


def _lead(t: Tensor, *sizes: int) -> Tensor:
    """``t[:s0, :s1, ...]``, or ``t`` itself when every size is the full size."""
    if all(s == n for s, n in zip(sizes, t.shape)):
        return t
    return t[tuple(slice(0, s) for s in sizes)]


class ElasticLinear(nn.Module):
    """``nn.Linear`` at (max_in, max_out) run at any leading (in, out)."""

    def __init__(self, max_in: int, max_out: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in))
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        trunc_normal_(self.weight, std=0.02)

    def forward(self, x: Tensor, out_features: int) -> Tensor:
        in_features = x.shape[-1]
        bias = None if self.bias is None else _lead(self.bias, out_features)
        return F.linear(x, _lead(self.weight, out_features, in_features), bias)


class ElasticLayerNorm(nn.Module):
    """LayerNorm over the leading ``x.shape[-1]`` features of a max-width affine."""

    def __init__(self, max_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(max_dim))
        self.bias = nn.Parameter(torch.zeros(max_dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        d = x.shape[-1]
        return F.layer_norm(x, (d,), _lead(self.weight, d), _lead(self.bias, d), self.eps)


class ElasticAttention(nn.Module):
    """Multi-head self-attention with elastic head count; q/k/v width = heads * head_dim."""

    def __init__(self, max_dim: int, max_heads: int, head_dim: int = 64) -> None:
        super().__init__()
        self.head_dim = head_dim
        # Rows are head-major: [head, (q|k|v), head_dim] (see module docstring).
        self.qkv = ElasticLinear(max_dim, 3 * max_heads * head_dim)
        self.proj = ElasticLinear(max_heads * head_dim, max_dim)

    def forward(self, x: Tensor, num_heads: int) -> Tensor:
        b, n, e = x.shape
        qkv = self.qkv(x, 3 * num_heads * self.head_dim)
        q, k, v = qkv.view(b, n, num_heads, 3, self.head_dim).permute(3, 0, 2, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(b, n, num_heads * self.head_dim)
        return self.proj(x, e)


class ElasticMlp(nn.Module):
    """fc1 -> GELU -> fc2 with elastic hidden width."""

    def __init__(self, max_dim: int, max_hidden: int) -> None:
        super().__init__()
        self.fc1 = ElasticLinear(max_dim, max_hidden)
        self.fc2 = ElasticLinear(max_hidden, max_dim)

    def forward(self, x: Tensor, hidden: int) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x, hidden)), x.shape[-1])


class ElasticBlock(nn.Module):
    """Pre-norm transformer block (timm's ``Block`` without layer scale)."""

    def __init__(
        self,
        max_dim: int,
        max_heads: int,
        max_hidden: int,
        head_dim: int = 64,
        drop_path: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = ElasticLayerNorm(max_dim, eps)
        self.attn = ElasticAttention(max_dim, max_heads, head_dim)
        self.norm2 = ElasticLayerNorm(max_dim, eps)
        self.mlp = ElasticMlp(max_dim, max_hidden)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, num_heads: int, mlp_hidden: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), num_heads))
        return x + self.drop_path(self.mlp(self.norm2(x), mlp_hidden))


class ElasticPatchEmbed(nn.Module):
    """Non-overlapping patch embedding (a strided conv) with elastic output width."""

    def __init__(self, patch_size: int, in_chans: int, max_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        # Same init as timm's PatchEmbed (PyTorch's default Conv2d init).
        self.proj = nn.Conv2d(in_chans, max_dim, patch_size, patch_size)

    def forward(self, x: Tensor, embed_dim: int) -> Tensor:
        w, b = _lead(self.proj.weight, embed_dim), _lead(self.proj.bias, embed_dim)
        x = F.conv2d(x, w, b, stride=self.patch_size)
        return x.flatten(2).transpose(1, 2)  # [B, N, E]
