"""Gradients of a weight-sharing supernet, written slice by slice.

A subnet uses the leading slice of each weight. Autograd's own slice backward would hand every
use a full-size gradient (zeros plus a copy of the slice) and, when teacher and student share a
weight in one step, add two full-size tensors. Instead the backward of
:func:`ovo.supernet.layers.lead` adds each slice's gradient into the leading slice of
``param.grad`` in place (:func:`accumulate_slice_grad`): the only full-size work left is
zeroing, which :class:`SliceGrads` shrinks to the regions written since the last step and
batches into one buffer, so data-parallel training can all-reduce every gradient with one
collective.

Semantics are those of autograd: a parameter a step never uses keeps ``grad=None`` (the
optimizer skips it); one it uses gets a full-size gradient that is zero outside the slices used.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

_VIEW = "_ovo_grad_view"  # attribute of a parameter: its gradient's slot in a SliceGrads buffer
_OWNER = "_ovo_slice_grads"


def _index(sizes: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, s) for s in sizes)


def accumulate_slice_grad(param: Tensor, sizes: tuple[int, ...], grad: Tensor) -> None:
    """``param.grad[:s0, :s1, ...] += grad`` (cast to the gradient's dtype in the same kernel),
    allocating ``param.grad`` (a zeroed slot of a :class:`SliceGrads` buffer if one is attached,
    else zeros) when it is ``None``."""
    owner: SliceGrads | None = getattr(param, _OWNER, None)
    if param.grad is None:
        param.grad = getattr(param, _VIEW) if owner is not None else torch.zeros_like(param)
    param.grad[_index(sizes)].add_(grad)
    if owner is not None:
        owner.touch(param, sizes)


class SliceGrads:
    """Every parameter's gradient as a view of one zero-initialised buffer per (device, dtype).

    Attach once the module is on its device (``SliceGrads(module.parameters())``). Each
    parameter's ``.grad`` is then that view from the first backward that writes it on;
    :meth:`zero_` re-zeroes only the bounding box of what was written since its last call and
    sets ``.grad`` back to ``None``; :meth:`all_reduce_` averages every gradient over a process
    group in one collective per buffer.
    """

    def __init__(self, params: Iterable[nn.Parameter], zero_whole: bool = False) -> None:
        """``zero_whole`` re-zeroes each written parameter's whole slot, not only the bounding
        box of what was written: needed where gradients outside the written slices can become
        non-zero, as with fp16's loss scaling, whose skipped overflow steps clip by a NaN
        norm (which scales the zeros too)."""
        self.zero_whole = zero_whole
        self.params = [p for p in params if p.requires_grad]
        self.buffers: list[Tensor] = []
        groups: dict[tuple[torch.device, torch.dtype], list[nn.Parameter]] = {}
        for p in self.params:
            if getattr(p, _OWNER, None) is not None:
                getattr(p, _OWNER).detach()  # a new run (e.g. fit again) takes the parameters
            groups.setdefault((p.device, p.dtype), []).append(p)
        for (device, dtype), members in groups.items():
            buffer = torch.zeros(sum(p.numel() for p in members), dtype=dtype, device=device)
            offset = 0
            for p in members:
                setattr(p, _VIEW, buffer[offset : offset + p.numel()].view_as(p))
                setattr(p, _OWNER, self)
                offset += p.numel()
            self.buffers.append(buffer)
        # per parameter, the bounding box of the slices written since the last zero_
        self.touched: dict[nn.Parameter, list[int]] = {}

    def touch(self, param: nn.Parameter, sizes: tuple[int, ...]) -> None:
        box = self.touched.get(param)
        if box is None:
            self.touched[param] = list(sizes)
        else:
            self.touched[param] = [max(a, b) for a, b in zip(box, sizes)]

    def zero_(self) -> None:
        """Zero what was written and clear every ``.grad`` (``optimizer.zero_grad()``)."""
        for p, box in self.touched.items():
            view = getattr(p, _VIEW)
            (view if self.zero_whole else view[_index(tuple(box))]).zero_()
        for p in self.params:
            p.grad = None
        self.touched.clear()

    def all_reduce_(self, group: object | None = None) -> None:
        """Average every gradient over ``group`` (all ranks must have used the same weights,
        as ovo's ranks do: they sample the same archs): one all-reduce per buffer."""
        import torch.distributed as dist

        for p in self.params:  # a gradient some code put in place of its slot joins the slot
            grad = p.grad
            if grad is not None and grad is not getattr(p, _VIEW):
                getattr(p, _VIEW).copy_(grad)
                p.grad = getattr(p, _VIEW)
                self.touched[p] = list(p.shape)
        world = dist.get_world_size(group)
        for buffer in self.buffers:
            dist.all_reduce(buffer, group=group)
            buffer.div_(world)

    def detach(self) -> None:
        """Give the parameters back to autograd's own gradients."""
        for p in self.params:
            if p.grad is not None and p.grad is getattr(p, _VIEW, None):
                p.grad = None  # it lives in this object's buffer
            for name in (_VIEW, _OWNER):
                if hasattr(p, name):
                    delattr(p, name)
        self.params, self.buffers = [], []
        self.touched.clear()
