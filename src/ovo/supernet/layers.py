"""Elastic layers: parameters allocated at the largest choice, each forward uses leading slices.

Every layer takes the sizes it should run at as forward arguments; no layer stores a "current"
size, so two subnets can run back to back (teacher then student) in one step.

Slicing notes (why the layouts are what they are):
- Slices are taken only on leading rows/columns, so they are strided views that BLAS consumes
  directly (leading dimension = the full width); nothing is copied per step.
- Every weight goes through :func:`lead` / :func:`leads`. When a
  :class:`~ovo.supernet.grads.SliceGrads` owns the parameter (training attaches one), its
  backward adds the slice's gradient straight into the leading slice of ``param.grad``: no
  full-size zero gradient plus copy per use (autograd's slice backward), no full-size add when
  teacher and student share a weight. A block's weights are sliced in one autograd node (one
  Python forward and backward per block, not per weight: small shapes are bound by per-op
  overhead), each slice one ``as_strided`` view. Under autocast the same
  call makes the low-precision copy a matmul needs (what autocast would make), and its backward
  casts and accumulates in one kernel. Without an owner it is plain autograd slicing.
- The fused q/k/v projection stores rows head-major ``[head, (q|k|v), head_dim]``, so the first
  ``h`` heads' q, k and v rows are one contiguous block and weight and bias are sliced by the
  same rows (AutoFormer slices its weight interleaved but its bias contiguously, its issue 121).
  Export reorders those rows into timm's ``[(q|k|v), head, head_dim]`` layout.
- A block's compute is one function of its sliced weights (one :class:`BlockWeights`),
  :func:`block_forward`: the unit ``torch.compile`` compiles once per block shape
  (:mod:`ovo.supernet.compile`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import Tensor, nn

from ovo.supernet.grads import SliceGrads, leading_view


def _index(sizes: tuple[int, ...]) -> tuple[slice, ...]:
    # indexing, not leading_view: autograd's own slice backward (as_strided's is a scatter)
    return tuple(slice(0, s) for s in sizes)


# one leading slice: (parameter, sizes, dtype to cast to or None)
SliceSpec = tuple[Tensor, tuple[int, ...], "torch.dtype | None"]


class _LeadingSlices(torch.autograd.Function):
    """``param[:s0, :s1, ...]`` (cast to ``dtype`` if given) of several parameters in one
    autograd node, whose backward writes each slice's gradient into ``param.grad`` directly
    instead of returning full-size gradients. One node per block, not one per weight: each
    node is a Python forward and a Python backward."""

    @staticmethod
    def forward(
        ctx,
        owner: SliceGrads,
        specs: tuple[tuple[tuple[int, ...], torch.dtype | None], ...],
        *params: Tensor,
    ) -> tuple[Tensor, ...]:
        ctx.owner, ctx.specs, ctx.params = owner, specs, params
        ctx.set_materialize_grads(False)  # an output no loss reached gets no (zero) gradient
        out = []
        for param, (sizes, dtype) in zip(params, specs):
            view = leading_view(param, sizes)
            out.append(view if dtype is None else view.to(dtype))
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: Tensor | None) -> tuple[None, ...]:
        for param, (sizes, _), grad in zip(ctx.params, ctx.specs, grads):
            if grad is not None:
                ctx.owner.accumulate_(param, sizes, grad)
        return (None,) * (2 + len(grads))


def leads(specs: Sequence[SliceSpec | None]) -> list[Tensor | None]:
    """:func:`lead` of each ``(param, sizes, dtype)`` (``None``, e.g. a missing bias, gives
    ``None``); with gradients on and one :class:`SliceGrads` owning every parameter, all in
    one autograd node."""
    given = [
        (p, tuple(sizes), None if dtype == p.dtype else dtype)
        for p, sizes, dtype in (s for s in specs if s is not None)
    ]
    owner = SliceGrads.of(given[0][0]) if given and torch.is_grad_enabled() else None
    if owner is not None and all(
        p.requires_grad and SliceGrads.of(p) is owner for p, _, _ in given
    ):
        out = iter(
            _LeadingSlices.apply(
                owner, tuple((sizes, dtype) for _, sizes, dtype in given), *(p for p, _, _ in given)
            )
        )
    else:
        out = iter([lead(p, sizes, dtype) for p, sizes, dtype in given])
    return [None if s is None else next(out) for s in specs]


def lead(param: Tensor, sizes: tuple[int, ...], dtype: torch.dtype | None = None) -> Tensor:
    """The leading ``sizes`` slice of ``param``, optionally cast to ``dtype``. With gradients
    on, its gradient goes straight into ``param.grad`` when a :class:`SliceGrads` owns
    ``param``, else through autograd's own slice backward (hooks, ``torch.func`` and torch's
    ``DistributedDataParallel`` then see it as for any module)."""
    if dtype == param.dtype:
        dtype = None
    if param.requires_grad and torch.is_grad_enabled():
        owner = SliceGrads.of(param)
        if owner is not None:
            return _LeadingSlices.apply(owner, ((tuple(sizes), dtype),), param)[0]
        view = param[_index(sizes)]
    else:
        # a plain tensor, never the Parameter itself: compiled evaluation graphs see one type
        view = leading_view(param.detach(), tuple(sizes))
    return view if dtype is None else view.to(dtype)


def matmul_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs matrix products in on ``device_type``, or ``None`` (no autocast)."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


class ElasticLinear(nn.Module):
    """``nn.Linear`` at (max_in, max_out) run at any leading (in, out)."""

    def __init__(self, max_in: int, max_out: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in))
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        trunc_normal_(self.weight, std=0.02)

    def specs(
        self, out_features: int, in_features: int, dtype: torch.dtype | None = None
    ) -> list[SliceSpec | None]:
        """The :func:`leads` specs of (weight, bias) at ``out_features`` x ``in_features``."""
        bias = None if self.bias is None else (self.bias, (out_features,), dtype)
        return [(self.weight, (out_features, in_features), dtype), bias]

    def sliced(
        self, out_features: int, in_features: int, dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """(weight, bias) of the leading ``out_features`` x ``in_features`` block."""
        w, b = leads(self.specs(out_features, in_features, dtype))
        assert w is not None
        return w, b

    def forward(self, x: Tensor, out_features: int) -> Tensor:
        w, b = self.sliced(out_features, x.shape[-1], matmul_dtype(x.device.type))
        return F.linear(x, w, b)


class ElasticLayerNorm(nn.Module):
    """LayerNorm over the leading ``x.shape[-1]`` features of a max-width affine."""

    def __init__(self, max_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(max_dim))
        self.bias = nn.Parameter(torch.zeros(max_dim))
        self.eps = eps

    def specs(self, dim: int) -> list[SliceSpec | None]:
        """The :func:`leads` specs of (weight, bias) at ``dim`` (no cast: autocast runs layer
        norms in fp32)."""
        return [(self.weight, (dim,), None), (self.bias, (dim,), None)]

    def sliced(self, dim: int) -> tuple[Tensor, Tensor]:
        w, b = leads(self.specs(dim))
        assert w is not None and b is not None
        return w, b

    def forward(self, x: Tensor) -> Tensor:
        d = x.shape[-1]
        return F.layer_norm(x, (d,), *self.sliced(d), self.eps)


class ElasticAttention(nn.Module):
    """The attention's parameters (computed by :func:`block_forward`): an elastic head count,
    q/k/v width = heads * head_dim whatever the embed dim."""

    def __init__(self, max_dim: int, max_heads: int, head_dim: int = 64) -> None:
        super().__init__()
        self.head_dim = head_dim
        # Rows are head-major: [head, (q|k|v), head_dim] (see module docstring).
        self.qkv = ElasticLinear(max_dim, 3 * max_heads * head_dim)
        self.proj = ElasticLinear(max_heads * head_dim, max_dim)


class ElasticMlp(nn.Module):
    """The MLP's parameters (fc1 -> GELU -> fc2, computed by :func:`block_forward`)."""

    def __init__(self, max_dim: int, max_hidden: int) -> None:
        super().__init__()
        self.fc1 = ElasticLinear(max_dim, max_hidden)
        self.fc2 = ElasticLinear(max_hidden, max_dim)


class BlockWeights(NamedTuple):
    """A block's weights sliced to one subnet's sizes (matmul weights in the matmul dtype)."""

    norm1_w: Tensor
    norm1_b: Tensor
    qkv_w: Tensor
    qkv_b: Tensor | None
    proj_w: Tensor
    proj_b: Tensor | None
    norm2_w: Tensor
    norm2_b: Tensor
    fc1_w: Tensor
    fc1_b: Tensor | None
    fc2_w: Tensor
    fc2_b: Tensor | None


def block_forward(
    x: Tensor,
    w: BlockWeights,
    keep_attn: Tensor | None,
    keep_mlp: Tensor | None,
    head_dim: int,
    eps: float,
) -> Tensor:
    """One pre-norm transformer block (timm's ``Block``, no layer scale) on weights already sliced
    to the subnet's sizes. ``keep_*`` are drop-path masks (``[B, 1, 1]``, already scaled by
    ``1 / keep_prob``) or ``None``. Its shapes are all it depends on, so a compiled copy serves
    every layer of a block shape."""
    b, n, e = x.shape
    heads = w.qkv_w.shape[0] // (3 * head_dim)
    y = F.layer_norm(x, (e,), w.norm1_w, w.norm1_b, eps)
    qkv = F.linear(y, w.qkv_w, w.qkv_b)
    q, k, v = qkv.view(b, n, heads, 3, head_dim).permute(3, 0, 2, 1, 4).unbind(0)
    y = F.scaled_dot_product_attention(q, k, v)
    y = F.linear(y.transpose(1, 2).reshape(b, n, heads * head_dim), w.proj_w, w.proj_b)
    x = x + (y if keep_attn is None else y * keep_attn)
    y = F.layer_norm(x, (e,), w.norm2_w, w.norm2_b, eps)
    y = F.linear(F.gelu(F.linear(y, w.fc1_w, w.fc1_b)), w.fc2_w, w.fc2_b)
    return x + (y if keep_mlp is None else y * keep_mlp)


BlockCompute = Callable[..., Tensor]


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
        self.drop_path = drop_path
        self.eps = eps

    def sliced(
        self, embed_dim: int, num_heads: int, mlp_hidden: int, dtype: torch.dtype | None
    ) -> BlockWeights:
        """The weights of :func:`block_forward` at these sizes (matmul weights in ``dtype``),
        sliced in one :func:`leads` call: in training, one autograd node per block."""
        e, width = embed_dim, num_heads * self.attn.head_dim
        return BlockWeights(
            *leads(
                [
                    *self.norm1.specs(e),
                    *self.attn.qkv.specs(3 * width, e, dtype),
                    *self.attn.proj.specs(e, width, dtype),
                    *self.norm2.specs(e),
                    *self.mlp.fc1.specs(mlp_hidden, e, dtype),
                    *self.mlp.fc2.specs(e, mlp_hidden, dtype),
                ]
            )
        )

    def drop_path_masks(
        self, x: Tensor, always: bool = False
    ) -> tuple[Tensor | None, Tensor | None]:
        """The two residual branches' drop-path masks (timm's ``DropPath``: one Bernoulli draw
        per sample and branch, scaled by ``1 / keep_prob``); ``None`` in eval mode or at rate 0,
        unless ``always`` (compiled blocks take masks in every layer, so that a layer's rate is
        data, not a constant of the graph)."""
        if not self.training or (self.drop_path == 0.0 and not always):
            return None, None
        keep = 1.0 - self.drop_path
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        if self.drop_path == 0.0:  # no draw: the random stream stays the eager model's
            return x.new_ones(shape), x.new_ones(shape)  # two tensors: aliasing would be a guard
        masks = []
        for _ in range(2):
            mask = x.new_empty(shape).bernoulli_(keep)
            if keep > 0.0:
                mask.div_(keep)
            masks.append(mask)
        return masks[0], masks[1]

    def forward(
        self,
        x: Tensor,
        num_heads: int,
        mlp_hidden: int,
        compute: BlockCompute = block_forward,
        always_masks: bool = False,
    ) -> Tensor:
        weights = self.sliced(x.shape[-1], num_heads, mlp_hidden, matmul_dtype(x.device.type))
        keep_attn, keep_mlp = self.drop_path_masks(x, always_masks)
        return compute(x, weights, keep_attn, keep_mlp, self.attn.head_dim, self.eps)


class ElasticPatchEmbed(nn.Module):
    """Non-overlapping patch embedding (a strided conv) with elastic output width."""

    def __init__(self, patch_size: int, in_chans: int, max_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        # Same init as timm's PatchEmbed (PyTorch's default Conv2d init).
        self.proj = nn.Conv2d(in_chans, max_dim, patch_size, patch_size)

    def forward(self, x: Tensor, embed_dim: int) -> Tensor:
        dtype = matmul_dtype(x.device.type)
        w, b = leads(
            [
                (self.proj.weight, (embed_dim, *self.proj.weight.shape[1:]), dtype),
                (self.proj.bias, (embed_dim,), dtype),
            ]
        )
        x = F.conv2d(x, w, b, stride=self.patch_size)
        return x.flatten(2).transpose(1, 2)  # [B, N, E]
