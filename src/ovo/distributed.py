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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.distributed as dist
from lightning.pytorch.overrides.distributed import _sync_module_states
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from torch.optim import Optimizer

from ovo.supernet.grads import SliceGrads


class SupernetDDPStrategy(DDPStrategy):
    """Lightning's DDP strategy for ovo's supernets (see the module docstring). Takes
    :class:`~lightning.pytorch.strategies.DDPStrategy`'s arguments."""

    strategy_name = "ovo_ddp"

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
        collective each (``OVOModule`` attaches them when fitting starts)."""
        if not (dist.is_available() and dist.is_initialized()) or self.world_size == 1:
            return
        buffers = getattr(self.lightning_module, "slice_grads", None)
        if buffers is None:
            raise RuntimeError(
                "SupernetDDPStrategy averages the gradients of an ovo supernet's SliceGrads "
                "buffers; this module has none (use it with ovo.module.OVOModule)"
            )
        average_gradients(buffers)


def average_gradients(grads: SliceGrads, group: Any = None) -> None:
    """Average a supernet's slice-gradient buffers over ``group``: what
    :class:`SupernetDDPStrategy` runs once per optimizer step (the benchmark times this call)."""
    grads.all_reduce_(group)


if "ovo_ddp" not in StrategyRegistry:  # trainer.strategy=ovo_ddp (conf/trainer/ddp.yaml)
    StrategyRegistry.register(
        "ovo_ddp",
        SupernetDDPStrategy,
        description="DDP for ovo supernets: no DDP wrapper, one gradient all-reduce per step",
    )
