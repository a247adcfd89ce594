"""Timing one thing, and the conditions a latency table is measured under.

:class:`Conditions` is how a measurement runs (device, dtype, batch, repeats, rounds, runtime);
:class:`TableConditions` is what a table records about where it was measured, as written in its
file, and the only reader of those keys (:meth:`TableConditions.measuring` turns a table's record
back into the :class:`Conditions` that time a whole model the same way).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from ovo.errors import ConfigError
from ovo.supernet.config import SHAPE_KEYS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# model settings a table's numbers depend on: the shapes, and how the head pools
MODEL_KEYS = (*SHAPE_KEYS, "global_pool")
# what a table is checked against (space, model, device) before it predicts; ovo's tables also
# hold device_type, threads, dtype, batch, tokens (older ones lack runtime, provider, rounds)
REQUIRED = ("device", "space", "model")


def device_name(device: torch.device) -> str:
    """A stable name of the hardware behind ``device`` (the GPU's, or the CPU's model)."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                model,
            )
    except OSError:
        pass
    return f"cpu: {model}"


@dataclass(frozen=True)
class Conditions:
    """What a measurement runs under."""

    device: torch.device
    dtype: torch.dtype
    batch: int
    repeats: int = 20
    warmup: int = 5
    # each thing is timed in this many rounds, round-robin over everything being timed, and the
    # median round kept: a shared machine's speed drifts over seconds (up to ~20% on a 2-core
    # VM), which a block timed in one go would carry into the table as that block's error
    rounds: int = 3
    runtime: str = "torch"  # or onnxruntime (ovo.latency.runtime)
    provider: str | None = None  # onnxruntime's execution provider
    threads: int | None = None  # onnxruntime's intra-op threads (None: torch's thread count)

    def context(self) -> AbstractContextManager[Any]:
        enabled = self.dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=enabled)


def time_ms(fn: Callable[[], Any], cond: Conditions) -> float:
    """Median milliseconds of ``fn()`` (after warm-up; CUDA synchronised)."""
    with torch.inference_mode(), cond.context():
        for _ in range(cond.warmup):
            fn()
        times = [wall_seconds(fn, cond.device) for _ in range(cond.repeats)]
    return 1e3 * statistics.median(times)


def wall_seconds(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one ``fn()``, with the device's queue drained before and after (CUDA runs
    asynchronously: without it the host's clock times the launch, not the work)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@dataclass(frozen=True)
class TableConditions:
    """Where and how a latency table was measured: the ``conditions`` of its file, kept exactly
    as written (the table's fingerprint hashes them), read through typed properties."""

    data: Mapping[str, Any]

    def __post_init__(self) -> None:
        missing = [k for k in REQUIRED if k not in self.data]
        if missing:
            raise ConfigError(f"its conditions lack {', '.join(missing)}")

    @property
    def runtime(self) -> str:
        """``torch`` (eager; tables without the key) or ``onnxruntime``."""
        return str(self.data.get("runtime") or "torch")

    @property
    def provider(self) -> str | None:
        """ONNX Runtime's execution provider (``None`` for torch)."""
        return self.data.get("provider")

    @property
    def device(self) -> str:
        """The device's name (:func:`device_name`)."""
        return str(self.data["device"])

    @property
    def device_type(self) -> str:
        return str(self.data.get("device_type") or self.device.split(":")[0])

    @property
    def threads(self) -> int:
        return int(self.data["threads"])

    @property
    def dtype(self) -> str:
        return str(self.data["dtype"])

    @property
    def batch(self) -> int:
        return int(self.data["batch"])

    @property
    def tokens(self) -> int:
        return int(self.data["tokens"])

    @property
    def space(self) -> Mapping[str, Any]:
        """The space's ``to_dict()``."""
        return self.data["space"]

    @property
    def model(self) -> Mapping[str, Any]:
        """The model settings of :data:`MODEL_KEYS` and the head dim."""
        return self.data["model"]

    @property
    def rounds(self) -> int:
        return int(self.data.get("rounds", 1))  # tables before rounds timed each thing once

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)

    def where(self) -> dict[str, Any]:
        """The conditions without the space and model (what a model card or report states)."""
        return {k: v for k, v in self.data.items() if k not in ("space", "model")}

    def describe(self) -> str:
        where = "" if self.runtime == "torch" else f"{self.runtime} ({self.provider}), "
        return (
            f"{where}{self.device}, {self.threads} threads, {self.dtype}, batch {self.batch}, "
            f"{self.tokens} tokens"
        )

    def measuring(self, repeats: int = 20, warmup: int = 5) -> Conditions:
        """The :class:`Conditions` that time a whole model as this table was timed."""
        device = torch.device("cuda" if self.device_type == "cuda" else "cpu")
        threads = self.threads if self.runtime != "torch" else None  # torch's: the process's
        return Conditions(
            device,
            DTYPES[self.dtype],
            self.batch,
            repeats,
            warmup,
            self.rounds,
            self.runtime,
            self.provider,
            threads,
        )
