"""Compiled supernet blocks: ``torch.compile`` once per block shape, never once per arch.

A space has few block shapes (embed dim x heads x MLP hidden: 12 for ``tiny``, 27 for
``nano``) and up to 1e9 archs. Every block runs :func:`~ovo.supernet.layers.block_forward` on
weights already sliced to its sizes, so the compiled function sees tensors of one shape per
block shape and nothing else that changes between layers or archs:

- the weights are inputs (sliced outside the graph), so all layers of one shape share a graph;
- drop path enters as per-sample mask tensors made outside the graph, so a layer's rate is data,
  not a graph constant (in training every layer gets masks when the model has drop path);
- the batch dimension is marked dynamic and size-oblivious, so a ragged last batch or another
  evaluation batch size reuses the graph.

What remains are one graph per block shape and grad mode (training, evaluation), under one
autocast state. The recompile limit is raised to cover exactly that, only while compiled blocks
run; a test counts the graphs. The ``compile``/``compile_options`` settings are
:class:`ovo.settings.CompileOptions`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch._dynamo
import torch.fx.experimental._config as fx_config
from rich.progress import track
from torch import Tensor

from ovo.settings import COMPILE_BACKENDS
from ovo.space import SearchSpace
from ovo.supernet.layers import BlockWeights, block_forward, matmul_dtype


def compiled_graph_count() -> int:
    """Graphs dynamo holds for :func:`block_forward` (every compiled copy in this process)."""
    try:
        from torch._dynamo.eval_frame import _debug_get_cache_entry_list

        return len(_debug_get_cache_entry_list(block_forward.__code__))
    except (ImportError, AttributeError):  # private API moved: fall back to the global counter
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])


class CompiledBlocks:
    """``block_forward`` compiled for the block shapes of ``space`` (a drop-in ``compute`` of
    :class:`~ovo.supernet.layers.ElasticBlock`)."""

    def __init__(self, space: SearchSpace, backend: str = "inductor", mode: str | None = None):
        if backend not in COMPILE_BACKENDS:
            raise ValueError(
                f"compile backend {backend!r}: use one of {', '.join(COMPILE_BACKENDS)}"
            )
        self.shapes = space.block_shapes()
        self.backend, self.mode = backend, mode
        # a graph per shape for training and one for evaluation, a little spare for a user's
        # own evaluation under another autocast state
        self.limit = 2 * len(self.shapes) + 4
        self._running = False
        self.fn = torch.compile(block_forward, backend=backend, mode=mode, dynamic=False)
        self.graphs_before = compiled_graph_count()
        self.warmup_seconds: float | None = None

    def __call__(
        self,
        x: Tensor,
        weights: BlockWeights,
        keep_attn: Tensor | None,
        keep_mlp: Tensor | None,
        head_dim: int,
        eps: float,
    ) -> Tensor:
        """:func:`block_forward`, compiled (same arguments)."""
        for t in (x, keep_attn, keep_mlp):  # the batch dimension: any size reuses the graph
            if t is not None:
                torch._dynamo.mark_dynamic(t, 0)
        with self.running():
            return self.fn(x, weights, keep_attn, keep_mlp, head_dim, eps)

    @contextmanager
    def running(self) -> Iterator[None]:
        """While the body runs: dynamo's recompile limits raised to cover this object's graphs
        (never for the process) and batch 1 no special case. Re-entrant and cheap inside itself,
        so a whole forward can enter it once (``SuperViT.forward_features`` does)."""
        if self._running:
            yield
            return
        config = torch._dynamo.config
        limits = {
            "recompile_limit": max(config.recompile_limit, self.limit),
            "accumulated_recompile_limit": max(config.accumulated_recompile_limit, 4 * self.limit),
        }
        with config.patch(**limits), fx_config.patch(backed_size_oblivious=True):
            self._running = True
            try:
                yield
            finally:
                self._running = False

    @property
    def graphs(self) -> int:
        """Graphs compiled since this object was made."""
        return compiled_graph_count() - self.graphs_before

    def warm_up(
        self,
        net: Any,
        batch_size: int,
        train: bool = True,
        progress: bool = True,
        context: Any = None,
    ) -> float:
        """Compile every block shape now (forward, and backward when ``train``; evaluation
        graphs under ``torch.inference_mode`` as Lightning and ``ovo.evaluate`` run them) on dummy
        input of ``batch_size`` samples, so throughput is steady from the first step; returns
        the seconds it took (added up in ``warmup_seconds``).

        Run it under the autocast state training/evaluation will use (``context``: a context
        manager factory, e.g. the precision plugin's): guards include it. Nothing touches the
        parameters' gradients (the weights are detached copies)."""
        block = net.blocks[0]
        device = block.norm1.weight.device
        tokens = net.cfg.num_tokens
        masks = train and net.cfg.drop_path_rate > 0
        start = time.perf_counter()
        items = self.shapes
        if progress:
            items = track(items, description=f"compiling {len(items)} block shapes", transient=True)
        was_training = block.training
        block.train(train)
        try:
            grad_mode = torch.enable_grad if train else torch.inference_mode
            for e, h, hidden in items:
                with (context or nullcontext)(), grad_mode():
                    x = torch.randn(batch_size, tokens, e, device=device, requires_grad=train)
                    # exactly what a real step passes (type, requires_grad, strides, dtype), but
                    # in training detached copies, so no parameter gets a gradient
                    weights = block.sliced(e, h, hidden, matmul_dtype(device.type))
                    if train:
                        weights = BlockWeights(
                            *(None if w is None else w.detach().requires_grad_() for w in weights)
                        )
                    keep = torch.ones(batch_size, 1, 1, device=device) if masks else None
                    # two tensors, as a real step's: aliased inputs would be another guard
                    keep_mlp = None if keep is None else keep.clone()
                    out = self(x, weights, keep, keep_mlp, block.attn.head_dim, block.eps)
                    if train:
                        out.float().sum().backward()
        finally:
            block.train(was_training)
        seconds = time.perf_counter() - start
        self.warmup_seconds = (self.warmup_seconds or 0.0) + seconds
        return seconds
