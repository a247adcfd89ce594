"""The steps the measures time, built by factories so that every closure binds its own objects.

The supernet's OVO step computes its loss with :func:`ovo.training.distill.step_losses`, the one
definition the training module calls.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ovo.training import distill
from ovo.training.distill import kd_loss, label_loss

from .fixture import Fixture

Forward = Callable[[torch.Tensor], torch.Tensor]


def adamw(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-6, weight_decay=0.05)


def fwd_bwd(model: Forward, x: torch.Tensor, amp, zero: Callable[[], None] | None = None):
    """Forward + backward, the gradients cleared first (``zero``) as a training step does."""

    def step() -> None:
        if zero is not None:
            zero()
        with amp():
            model(x).float().sum().backward()

    return step


def static_zero(*models: nn.Module) -> Callable[[], None]:
    def zero() -> None:
        for m in models:
            m.zero_grad(set_to_none=True)

    return zero


def inference(model: Forward, x: torch.Tensor, amp) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), amp():
            model(x)

    return step


def ovo_step(
    fx: Fixture,
    forward: Callable,
    zero: Callable[[], None],
    opt: torch.optim.Optimizer | None = None,
    after_backward: Callable[[], None] | None = None,
) -> Callable[[], None]:
    """One online-distillation step on ``fx``'s batch and teacher/student pair: gradients
    cleared (``zero``), the step's loss (teacher CE + student KD, ``step_losses``), one
    backward, ``after_backward`` (e.g. the gradient all-reduce), then ``opt``'s step if given.
    ``forward(x, arch)`` is the supernet, a DDP wrapper of it, or static models by arch."""

    def step() -> None:
        zero()
        with fx.amp():
            loss, _ = distill.step_losses(forward, fx.x, fx.y, fx.pair, fx.kd)
        loss.backward()
        if after_backward is not None:
            after_backward()
        if opt is not None:
            opt.step()

    return step


def static_pair_step(fx: Fixture, t_model: nn.Module, s_model: nn.Module) -> Callable[[], None]:
    """The same work on two static models: a teacher step, then a student step against it,
    each with its own optimizer. Two separate models and two optimizer steps are not the
    supernet's step, so this baseline calls the two losses itself rather than
    ``step_losses`` (which also computes the student's CE, weighted 0 at ``alpha`` 1)."""
    opt_t, opt_s = adamw(t_model.parameters()), adamw(s_model.parameters())

    def step() -> None:
        opt_t.zero_grad(set_to_none=True)
        with fx.amp():
            t = t_model(fx.x)
            loss_t = label_loss(t, fx.y)
        loss_t.backward()
        opt_t.step()
        opt_s.zero_grad(set_to_none=True)
        with fx.amp():
            loss_s = kd_loss(s_model(fx.x), t.detach(), fx.kd)
        loss_s.backward()
        opt_s.step()

    return step


def single_step(fx: Fixture, model: nn.Module) -> Callable[[], None]:
    """One static model's training step (CE; the student's KD target costs the same memory).
    Gradients stay allocated between steps, as the supernet's SliceGrads buffer does, so both
    peaks are over a steady state of weights, optimizer state and gradient storage."""
    opt = adamw(model.parameters())

    def step() -> None:
        opt.zero_grad(set_to_none=False)
        with fx.amp():
            loss = label_loss(model(fx.x), fx.y)
        loss.backward()
        opt.step()

    return step
