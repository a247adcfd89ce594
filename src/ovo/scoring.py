"""Score many subnets with inherited weights on one data split, batched, on any device(s).

Each data batch is loaded once and run through every arch (data loading is amortised over the
archs), optionally kept in device memory across calls (the search scores the same split every
generation). Runs under ``torch.inference_mode`` and Fabric's precision (bf16 on GPU); under
DDP every rank scores its shard of the split and the counts are all-reduced.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lightning.fabric import Fabric
from lightning.fabric.utilities.exceptions import MisconfigurationException
from rich.progress import track
from torch import Tensor

from ovo.errors import ConfigError
from ovo.settings import settings_from
from ovo.space import Arch
from ovo.supernet import SuperViT


@dataclass(frozen=True)
class ArchScore:
    arch: Arch
    acc1: float
    acc5: float
    num_images: int
    hits1: int = 0  # top-1 correct images (acc1 * num_images, exactly)


@dataclass(frozen=True)
class EvalSettings:
    """The ``eval`` block of the checkpoint commands: where and how subnets are scored.

    ``precision`` null means bf16-mixed on CUDA and 32-true elsewhere; ``cache`` keeps a split's
    batches in (device) memory across calls; ``max_batches`` scores the first N batches only.
    """

    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    cache: bool = True
    max_batches: int | None = None

    def __post_init__(self) -> None:
        if self.num_nodes < 1:
            raise ConfigError(f"eval.num_nodes={self.num_nodes} must be at least 1")
        if self.max_batches is not None and self.max_batches < 1:
            raise ConfigError(f"eval.max_batches={self.max_batches} must be at least 1 or null")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> EvalSettings:
        return settings_from(cls, data, "eval")


def make_fabric(settings: EvalSettings | None = None) -> Fabric:
    """A launched Fabric for ``settings``; a setting this machine cannot run (no GPU, an unknown
    strategy...) is a :class:`ConfigError` naming the ``eval`` keys."""
    s = settings or EvalSettings()
    precision = s.precision
    if precision is None:
        cuda = s.accelerator in ("gpu", "cuda") or (
            s.accelerator == "auto" and torch.cuda.is_available()
        )
        precision = "bf16-mixed" if cuda else "32-true"
    try:
        fabric = Fabric(
            accelerator=s.accelerator,
            devices=s.devices,
            strategy=s.strategy,
            precision=precision,
            num_nodes=s.num_nodes,
        )
    except (MisconfigurationException, ValueError, RuntimeError) as err:
        raise ConfigError(
            f"eval.accelerator={s.accelerator} eval.devices={s.devices} eval.strategy="
            f"{s.strategy} eval.precision={precision}: {' '.join(str(err).split())}"
        ) from err
    fabric.launch()
    return fabric


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

    def num_images(self) -> int:
        """Images in the split as scored (``max_batches`` applied), over all ranks."""
        count = torch.zeros((), dtype=torch.long, device=self.fabric.device)
        for _, y in self._batches():
            count += y.numel()
        if self.fabric.world_size > 1:
            count = self.fabric.all_reduce(count, reduce_op="sum")
        return int(count)

    def _local_range(self, images: tuple[int, int] | None) -> tuple[int, int | None]:
        """This rank's positions of the global image range [start, stop) (rank ``r`` holds
        global positions ``r, r + world, ...`` of the split, see ``EvalSampler``)."""
        if images is None:
            return 0, None
        start, stop = images
        world, rank = self.fabric.world_size, self.fabric.global_rank
        return max(0, -(-(start - rank) // world)), max(0, -(-(stop - rank) // world))

    @torch.inference_mode()
    def evaluate(
        self,
        archs: Sequence[Arch],
        progress: bool = False,
        images: tuple[int, int] | None = None,
    ) -> list[ArchScore]:
        """Top-1/top-5 of every arch on the split, or on its images ``[start, stop)`` (in the
        loader's order, over all ranks); ``progress`` shows a bar over the data batches."""
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
        first, last = self._local_range(images)
        position = 0
        for x, y in bar(self._batches()):
            lo, hi = (
                max(first - position, 0),
                len(y) if last is None else min(last - position, len(y)),
            )
            position += len(y)
            if hi <= lo:
                if last is not None and position >= last and not self.cache:
                    break
                continue
            x, y = x[lo:hi], y[lo:hi]
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
            ArchScore(a, hits[0][i] / max(n, 1), hits[1][i] / max(n, 1), n, hits[0][i])
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
    return lambda it: track(it, description=description, transient=True)
