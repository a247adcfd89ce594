"""Timing helpers: every ratio is two measurements taken interleaved in one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def first_call_s(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of ``fn`` (for a compiled step's first call: the compile too)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def paired_median(
    fa: Callable[[], object],
    fb: Callable[[], object],
    device: torch.device,
    repeats: int,
    warmup: int,
) -> tuple[float, float]:
    """Median seconds per call of ``fa`` and ``fb``, measured interleaved (ABBA order), so the
    machine's drift enters both alike instead of moving the ratio."""
    for _ in range(warmup):
        fa()
        fb()
    times: dict[int, list[float]] = {0: [], 1: []}
    for i in range(repeats):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            fn = fa if which == 0 else fb
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[which].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def interleaved_medians(
    fns: list[Callable[[], object]], device: torch.device, repeats: int, warmup: int
) -> list[float]:
    """Median seconds per call of each of ``fns``, one call of each per round, the order
    rotated every round (ABC, BCA, CAB, ...): :func:`paired_median` for more than two."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for i in range(repeats):
        for k in range(len(fns)):
            which = (i + k) % len(fns)
            sync(device)
            start = time.perf_counter()
            fns[which]()
            sync(device)
            times[which].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]
