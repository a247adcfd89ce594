"""Peak memory of one training step over its steady state (weights, optimizer state, gradient
storage): the OVO step against a static teacher step + a static student step. On a GPU: CUDA's
allocator peak; on a CPU: the resident-set high-water mark, each step in a fresh process."""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Callable

import torch

from .child import REPO, python_argv
from .fixture import Fixture, find_setting
from .report import Row
from .steps import adamw, ovo_step, single_step

KINDS = ("ovo", "teacher", "student")


def measure(fx: Fixture, args) -> list[Row]:
    if fx.device.type == "cuda":
        results = {k: _cuda_peak_mb(_step(fx, k), fx.device) for k in KINDS}
    elif args.quick:  # the smoke test: in-process after other rows, numbers not meaningful
        results = {k: _rss_peak_mb(_step(fx, k)) for k in KINDS}
    else:
        results = {k: _rss_peak_mb_child(k, fx.setting.name) for k in KINDS}
    pair_mb = results["teacher"] + results["student"]
    return [
        Row(
            "peak step memory, OVO / (static teacher + student)",
            f"tiny {fx.setting.name}",
            # a toy step (quick) can stay within pages the process already holds: nothing to
            # divide by
            results["ovo"] / pair_mb if pair_mb >= 1.0 else None,
            "<= 1.15",
            detail={f"{k}_mb": v for k, v in results.items()},
        )
    ]


def _step(fx: Fixture, kind: str) -> Callable[[], None]:
    """One training step of ``kind``: the OVO step (with the supernet's optimizer), or one
    static model's step (the teacher's or the student's)."""
    if kind == "ovo":
        net = fx.supernet
        return ovo_step(fx, net, fx.slice_grads.zero_, adamw(net.parameters()))
    return single_step(fx, fx.static(fx.teacher if kind == "teacher" else fx.student))


def _cuda_peak_mb(step: Callable[[], None], device: torch.device) -> float:
    step()  # optimizer state now exists: that is the steady state
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    torch.cuda.empty_cache()
    return peak


def _rss_peak_mb_child(kind: str, setting: str) -> float:
    """:func:`child_peak_rss` in a fresh process, so earlier allocations do not hide the step's."""
    code = f"from ovo_bench import memory; print(memory.child_peak_rss({kind!r}, {setting!r}))"
    # large blocks mmapped and freed memory returned at once: RSS then follows the live tensors
    # instead of what glibc keeps cached from the warm-up step
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run(
        python_argv(code), capture_output=True, text=True, check=True, cwd=REPO, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


def child_peak_rss(kind: str, setting: str) -> float:
    """Peak RSS (MB) one step of ``kind`` adds over the steady state (a full run's CPU setting)."""
    fx = Fixture(find_setting(setting, False, "cpu"), torch.device("cpu"))
    step = _step(fx, kind)
    if kind != "ovo":  # the supernet the static model came from is not part of its step
        del fx.supernet
    return _rss_peak_mb(step)


def _rss_peak_mb(step: Callable[[], None]) -> float:
    step()  # optimizer state now exists: that is the steady state
    before = _rss_mb()
    # ru_maxrss is the lifetime peak, which building the supernet (and, for the static steps,
    # exporting from it) may have set before the step: reset the kernel's high-water mark so
    # the peak is the step's own (Linux >= 4.0)
    reset = _reset_peak_rss()
    step()
    peak = (
        _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return peak - before


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(key)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
