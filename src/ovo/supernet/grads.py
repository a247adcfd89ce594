"""Gradients of a weight-sharing supernet, written slice by slice.

A subnet uses the leading slice of each weight. Autograd's own slice backward would hand every
use a full-size gradient (zeros plus a copy of the slice) and, when teacher and student share a
weight in one step, add two full-size tensors. A :class:`SliceGrads` attached to the parameters
changes that: the backward of :func:`ovo.supernet.layers.lead` then adds each slice's gradient
into the leading slice of ``param.grad`` in place (:meth:`SliceGrads.accumulate_`), the only
full-size work left is zeroing, which :class:`SliceGrads` shrinks to the regions written since the
last step, and every gradient lives in one buffer, so data-parallel training can all-reduce them
with one collective. A parameter with no :class:`SliceGrads` owner takes autograd's own path
(hooks, ``torch.func``, torch's DDP all see ordinary gradients).

Semantics are those of autograd: a parameter a step never uses keeps ``grad=None`` (the
optimizer skips it); one it uses gets a full-size gradient that is zero outside the slices used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary


def leading_view(t: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """``t[:s0, :s1, ...]`` as one ``as_strided`` view (the same view as the indexing, which
    dispatches a ``slice`` per dimension plus an ``alias`` for each full one), or ``t`` itself
    when that is all of it."""
    return t if sizes == t.shape else t.as_strided(sizes, t.stride())


def _volume(sizes: Iterable[int]) -> int:
    n = 1
    for s in sizes:
        n *= s
    return n


class SliceGrads:
    """Every parameter's gradient as a view of one zero-initialised buffer per (device, dtype).

    Attach once the module is on its device (``SliceGrads(module.parameters())``): from then on
    :func:`~ovo.supernet.layers.lead` writes these parameters' gradients in place, and each
    ``.grad`` is its view from the first backward that writes it on; :meth:`zero_` re-zeroes
    only the bounding box of what was written since its last call and sets ``.grad`` back to
    ``None``; :meth:`all_reduce_` averages every gradient over a process group in one collective
    per buffer. :meth:`detach` gives the parameters back to autograd.
    """

    # parameter -> the SliceGrads that owns its gradient (weak: a dropped model leaves no entry)
    _owners: WeakIdKeyDictionary = WeakIdKeyDictionary()

    @classmethod
    def of(cls, param: Tensor) -> SliceGrads | None:
        """The :class:`SliceGrads` attached to ``param``, if any."""
        return cls._owners.get(param)

    def __init__(self, params: Iterable[nn.Parameter], zero_whole: bool = False) -> None:
        """``zero_whole`` re-zeroes each written parameter's whole slot, not only the bounding
        box of what was written: needed where gradients outside the written slices can become
        non-zero, as with fp16's loss scaling, whose skipped overflow steps clip by a NaN
        norm (which scales the zeros too)."""
        self.zero_whole = zero_whole
        self.params = [p for p in params if p.requires_grad]
        self.views: dict[nn.Parameter, Tensor] = {}
        self.buffers: list[Tensor] = []
        groups: dict[tuple[torch.device, torch.dtype], list[nn.Parameter]] = {}
        for p in self.params:
            previous = SliceGrads.of(p)
            if previous is not None:
                previous.detach()  # a new run (e.g. fit again) takes the parameters
            groups.setdefault((p.device, p.dtype), []).append(p)
        # which buffer each parameter's slot is in (zero_ clears a mostly written one whole)
        self.buffer_of: dict[nn.Parameter, int] = {}
        for (device, dtype), members in groups.items():
            buffer = torch.zeros(sum(p.numel() for p in members), dtype=dtype, device=device)
            offset = 0
            for p in members:
                self.views[p] = buffer[offset : offset + p.numel()].view_as(p)
                self.buffer_of[p] = len(self.buffers)
                SliceGrads._owners[p] = self
                offset += p.numel()
            self.buffers.append(buffer)
        self.order = {p: i for i, p in enumerate(self.params)}
        # per parameter, the bounding box of the slices written since the last zero_
        self.touched: dict[nn.Parameter, list[int]] = {}
        # set when a loss behind these gradients was not finite; consumed by the all-reduce of
        # ovo.distributed (not cleared by zero_: Lightning zeroes between forward and backward)
        self.nonfinite = False

    def accumulate_(self, param: nn.Parameter, sizes: tuple[int, ...], grad: Tensor) -> None:
        """``param.grad[:s0, :s1, ...] += grad`` (cast to the gradient's dtype in the same
        kernel), ``param.grad`` being this parameter's zeroed slot when it is ``None``."""
        if param.grad is None:
            view = self.views.get(param)
            # a parameter detached between forward and backward: a gradient of its own
            param.grad = torch.zeros_like(param) if view is None else view
        leading_view(param.grad, sizes).add_(grad)
        box = self.touched.get(param)
        self.touched[param] = (
            list(sizes) if box is None else [max(a, b) for a, b in zip(box, sizes)]
        )

    def digest(self) -> int:
        """A 62-bit fingerprint of which slices were written since the last :meth:`zero_`:
        ranks that used the same weights have the same digest."""
        boxes = sorted((self.order[p], tuple(box)) for p, box in self.touched.items())
        return int.from_bytes(hashlib.blake2b(repr(boxes).encode(), digest_size=8).digest()) >> 2

    def zero_(self) -> None:
        """Zero what was written and clear every ``.grad`` (``optimizer.zero_grad()``). A
        buffer whose written regions cover at least half of it is zeroed whole, in one kernel
        instead of one per parameter (outside the written regions it is zero already)."""
        written = [0] * len(self.buffers)
        for p, box in self.touched.items():
            if p in self.views:
                written[self.buffer_of[p]] += p.numel() if self.zero_whole else _volume(box)
        whole = [2 * n >= b.numel() for n, b in zip(written, self.buffers)]
        for i, buffer in enumerate(self.buffers):
            if whole[i]:
                buffer.zero_()
        for p, box in self.touched.items():
            view = self.views.get(p)
            if view is not None and not whole[self.buffer_of[p]]:
                (view if self.zero_whole else leading_view(view, tuple(box))).zero_()
        for p in self.params:
            p.grad = None
        self.touched.clear()

    def all_reduce_(self, group: object | None = None) -> None:
        """Average every gradient over ``group`` (all ranks must have used the same weights,
        as ovo's ranks do: they sample the same archs): one all-reduce per buffer."""
        for p in self.params:  # a gradient some code put in place of its slot joins the slot
            grad, view = p.grad, self.views[p]
            if grad is not None and grad is not view:
                view.copy_(grad)
                p.grad = view
                self.touched[p] = list(p.shape)
        world = dist.get_world_size(group)
        for buffer in self.buffers:
            dist.all_reduce(buffer, group=group)
            buffer.div_(world)

    def detach(self) -> None:
        """Give the parameters back to autograd's own gradients."""
        for p in self.params:
            if p.grad is not None and p.grad is self.views.get(p):
                p.grad = None  # it lives in this object's buffer
            if SliceGrads.of(p) is self:
                del SliceGrads._owners[p]
        self.params, self.buffers, self.views, self.order = [], [], {}, {}
        self.buffer_of = {}
        self.touched.clear()
