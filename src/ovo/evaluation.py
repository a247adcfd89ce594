"""Score many subnets with inherited weights on one data split, batched, on any device(s).

Each data batch is loaded once and run through every arch (data loading is amortised over the
archs), optionally kept in device memory across calls (the search scores the same split every
generation). Runs under ``torch.inference_mode`` and Fabric's precision (bf16 on GPU); under
DDP every rank scores its shard of the split and the counts are all-reduced.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lightning.fabric import Fabric
from torch import Tensor

from ovo.space import Arch
from ovo.supernet import SuperViT


@dataclass(frozen=True)
class ArchScore:
    arch: Arch
    acc1: float
    acc5: float
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "acc1": self.acc1,
            "acc5": self.acc5,
            "num_images": self.num_images,
        }


def make_fabric(
    accelerator: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    precision: str | None = None,
    num_nodes: int = 1,
) -> Fabric:
    """A launched Fabric; precision defaults to bf16-mixed on CUDA and 32-true elsewhere."""
    if precision is None:
        cuda = accelerator in ("gpu", "cuda") or (
            accelerator == "auto" and torch.cuda.is_available()
        )
        precision = "bf16-mixed" if cuda else "32-true"
    fabric = Fabric(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=precision,
        num_nodes=num_nodes,
    )
    fabric.launch()
    return fabric


def fabric_from_config(eval_cfg: Any) -> Fabric:
    """``make_fabric`` from the ``eval`` block of the search/evaluate configs."""
    return make_fabric(
        eval_cfg.accelerator,
        eval_cfg.devices,
        eval_cfg.strategy,
        eval_cfg.precision,
        eval_cfg.num_nodes,
    )


class SubnetEvaluator:
    """Top-1/top-5 of any list of archs on ``loader``'s split (this rank's shard of it)."""

    def __init__(
        self,
        net: SuperViT,
        loader: Iterable[tuple[Tensor, Tensor]],
        fabric: Fabric,
        cache: bool = True,
        max_batches: int | None = None,
    ) -> None:
        self.net = net.to(fabric.device).eval()
        self.loader = loader
        self.fabric = fabric
        self.cache = cache
        self.max_batches = max_batches
        self._cached: list[tuple[Tensor, Tensor]] | None = None
        self.images_scored = 0  # arch x image pairs, over all calls
        self.seconds = 0.0

    def _batches(self) -> Iterable[tuple[Tensor, Tensor]]:
        if self._cached is not None:
            yield from self._cached
            return
        kept = []
        for i, (x, y) in enumerate(self.loader):
            if self.max_batches is not None and i >= self.max_batches:
                break
            batch = (
                x.to(self.fabric.device, non_blocking=True),
                y.to(self.fabric.device, non_blocking=True),
            )
            if self.cache:
                kept.append(batch)
            yield batch
        if self.cache:
            self._cached = kept

    @torch.inference_mode()
    def evaluate(self, archs: Sequence[Arch], progress: bool = False) -> list[ArchScore]:
        """Top-1/top-5 of every arch; ``progress`` shows a bar over the data batches."""
        if not archs:
            return []
        for arch in archs:
            self.net.check_arch(arch)
        start = time.perf_counter()
        device = self.fabric.device
        k5 = min(5, self.net.cfg.num_classes)
        hits = torch.zeros(2, len(archs), dtype=torch.long, device=device)
        count = torch.zeros((), dtype=torch.long, device=device)
        bar = _progress_bar(
            f"scoring {len(archs)} archs", progress and self.fabric.global_rank == 0
        )
        for x, y in bar(self._batches()):
            for i, arch in enumerate(archs):
                with self.fabric.autocast():
                    logits = self.net(x, arch)
                match = logits.topk(k5, dim=-1).indices == y[:, None]
                hits[0, i] += match[:, 0].sum()
                hits[1, i] += match.any(dim=-1).sum()
            count += y.numel()
        if self.fabric.world_size > 1:
            hits = self.fabric.all_reduce(hits, reduce_op="sum")
            count = self.fabric.all_reduce(count, reduce_op="sum")
        n = int(count)
        hits = hits.cpu().tolist()
        self.seconds += time.perf_counter() - start
        self.images_scored += n * len(archs)
        return [
            ArchScore(a, hits[0][i] / max(n, 1), hits[1][i] / max(n, 1), n)
            for i, a in enumerate(archs)
        ]

    @property
    def throughput(self) -> float:
        """Arch x image pairs scored per second so far (all ranks)."""
        return self.images_scored / self.seconds if self.seconds else 0.0


def _progress_bar(description: str, enabled: bool):
    """``rich.progress.track`` when enabled, else the identity."""
    if not enabled:
        return lambda it: it
    from rich.progress import track

    return lambda it: track(it, description=description, transient=True)
