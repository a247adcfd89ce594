"""Data-parallel training of a weight-sharing supernet without ``DistributedDataParallel``.

Torch's DDP learns that a gradient is ready from autograd's accumulation and, when a step may
leave weights unused (a subnet uses slices; a shallow subnet skips whole blocks), has to search
the autograd graph for unused parameters every step (``find_unused_parameters=True``). ovo does
not need either: every rank samples the same archs (the arch RNG is a function of seed and step),
so every rank uses the same weights, and the supernet writes its gradients slice by slice into
one buffer (:class:`ovo.supernet.grads.SliceGrads`). :class:`SupernetDDPStrategy` therefore keeps
Lightning's DDP process group, launcher, samplers and collectives, but leaves the model unwrapped
and averages the gradient buffer with one all-reduce after the last backward of each optimizer
step (before gradient clipping and the step), as DDP's ``no_sync`` would for accumulation.

That contract is checked, not assumed. With the gradients, the ranks exchange one small status
(:func:`average_gradients`): a digest of the weight slices each rank wrote, and whether its loss
was finite. Ranks that used different slices stop with an error instead of averaging unrelated
gradients; a non-finite loss on any rank stops every rank at the same point, before the optimizer
step (a rank that raised alone would leave the others waiting in the next collective).
DistributedDataParallel's own arguments (``find_unused_parameters``, ``static_graph``, comm
hooks, ...) have nothing to act on here and are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import _sync_module_states
from lightning.pytorch.strategies import DDPStrategy, Strategy, StrategyRegistry
from torch.optim import Optimizer

from ovo.errors import ConfigError
from ovo.supernet.grads import SliceGrads

# DDPStrategy arguments that configure the DistributedDataParallel wrapper ovo does not use
_WRAPPER_ARGS = ("ddp_comm_state", "ddp_comm_hook", "ddp_comm_wrapper", "model_averaging_period")


class SliceGradsOwner(Protocol):
    """What the strategy needs of the LightningModule it trains (``OVOModule`` is one): the
    slice-gradient buffers it attaches when fitting starts, and the error a non-finite loss on
    another rank stops this one with."""

    slice_grads: SliceGrads | None

    def nonfinite_error(self, message: str | None = None) -> Exception: ...


def reduces_slice_grads(strategy: Strategy | None) -> bool:
    """Whether ``strategy`` averages a supernet's :class:`SliceGrads` buffers itself (then the
    module attaches them and flags a non-finite loss instead of raising alone); torch's own
    DDP/FSDP wrappers do not: they need autograd's gradients."""
    return bool(getattr(strategy, "reduces_slice_grads", False))


class SupernetDDPStrategy(DDPStrategy):
    """Lightning's DDP strategy for ovo's supernets (see the module docstring). Takes
    :class:`~lightning.pytorch.strategies.DDPStrategy`'s arguments except those of the
    ``DistributedDataParallel`` wrapper, which it refuses."""

    strategy_name = "ovo_ddp"
    reduces_slice_grads = True  # the one thing the module asks (see reduces_slice_grads)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        wrapper = [k for k in kwargs if k in _WRAPPER_ARGS and kwargs[k] is not None]
        known = set(_WRAPPER_ARGS) | {
            "accelerator",
            "parallel_devices",
            "cluster_environment",
            "checkpoint_io",
            "precision_plugin",
            "process_group_backend",
            "timeout",
            "start_method",
        }
        refused = wrapper + [k for k in kwargs if k not in known]  # DDP's own (**kwargs)
        if refused:
            raise ConfigError(
                f"trainer.strategy=ovo_ddp does not wrap the model in DistributedDataParallel, "
                f"so {', '.join(refused)} has nothing to act on: remove it (or use "
                "trainer.strategy=ddp)"
            )
        super().__init__(*args, **kwargs)

    def configure_ddp(self) -> None:
        # no DistributedDataParallel wrapper; like DDP, start every rank from rank 0's weights
        _sync_module_states(self.model)

    def optimizer_step(
        self,
        optimizer: Optimizer,
        closure: Callable[[], Any],
        model: Any = None,
        **kwargs: Any,
    ) -> Any:
        def closure_then_sync() -> Any:
            result = closure()
            self.all_reduce_gradients()
            return result

        return super().optimizer_step(optimizer, closure_then_sync, model, **kwargs)

    def all_reduce_gradients(self) -> None:
        """Average the gradients over all ranks: the module's slice-gradient buffers, one
        collective each (``OVOModule`` attaches them when fitting starts); stop every rank if
        any rank's loss was not finite."""
        if not (dist.is_available() and dist.is_initialized()) or self.world_size == 1:
            return
        module = cast(SliceGradsOwner, self.lightning_module)
        grads = getattr(module, "slice_grads", None)
        if grads is None:
            raise RuntimeError(
                "SupernetDDPStrategy averages the gradients of an ovo supernet's SliceGrads "
                "buffers; this module has none (use it with ovo.training.module.OVOModule)"
            )
        average_gradients(grads)
        if grads.nonfinite:  # on every rank alike: the flag was all-reduced with the gradients
            raise module.nonfinite_error()


class RankMismatchError(RuntimeError):
    """Ranks wrote gradients of different weight slices: averaging them would mix unrelated
    gradients (ranks must sample the same archs; see :mod:`ovo.training.distill`)."""


def average_gradients(grads: SliceGrads, group: Any = None) -> None:
    """Average a supernet's slice-gradient buffers over ``group``: what
    :class:`SupernetDDPStrategy` runs once per optimizer step (the benchmark times this call).

    Beside the buffers' all-reduce, one all-reduce (MAX) of three integers checks the contract:
    the digest of the slices each rank wrote (:meth:`SliceGrads.digest`; max and -min agree only
    if every rank's is the same) and whether any rank flagged a non-finite loss
    (``grads.nonfinite``, then set on every rank). Raises :class:`RankMismatchError` when the
    digests differ."""
    digest = grads.digest()
    device = grads.buffers[0].device if grads.buffers else torch.device("cpu")
    status = torch.tensor([digest, -digest, int(grads.nonfinite)], dtype=torch.int64)
    status = status.to(device)
    dist.all_reduce(status, op=dist.ReduceOp.MAX, group=group)
    grads.all_reduce_(group)
    high, neg_low, nonfinite = status.tolist()
    grads.nonfinite = bool(nonfinite)
    if high != -neg_low and not grads.nonfinite:  # a non-finite rank may have stopped early
        raise RankMismatchError(
            f"ranks wrote gradients of different weight slices (digests {-neg_low:#x} to "
            f"{high:#x}): every rank must run the same archs at each step"
        )


if "ovo_ddp" not in StrategyRegistry:  # trainer.strategy=ovo_ddp (conf/trainer/ddp.yaml)
    StrategyRegistry.register(
        "ovo_ddp",
        SupernetDDPStrategy,
        description="DDP for ovo supernets: no DDP wrapper, one gradient all-reduce per step",
    )
