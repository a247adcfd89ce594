"""OpenMP threading defaults, applied by ``import ovo`` before anything loads torch.

torch's PyPI wheels run their CPU kernels on GNU OpenMP (``torch/lib/libgomp.so.1``; MKL inside
torch threads through it too). Its idle worker threads spin about 300,000 iterations (a few ms)
before they sleep, and torch starts one per core it sees. Two such processes on the same cores
spin in each other's time slices: on 2 cores beside an ovo search, ``python -m ovo.train
experiment=quickstart`` ran 6x slower than with ``OMP_NUM_THREADS=1``. So every ovo process sets,
where the user's environment does not already say otherwise:

- ``GOMP_SPINCOUNT``: idle threads spin only briefly, then sleep (:data:`SPIN_COUNT`, chosen by
  measurement: ``docs/performance/threads.md``);
- ``OMP_NUM_THREADS``: the CPUs this process may use (:func:`usable_cpus`: its affinity mask and
  the cgroup CPU quota, e.g. ``docker --cpus`` or a Kubernetes limit, which torch ignores).

libgomp reads them once, when torch loads it, so they must be in ``os.environ`` before
``import torch``: ``ovo/__init__.py`` imports this module first. What a user sets wins, variable
group by variable group: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (the count),
``OMP_WAIT_POLICY``/``GOMP_SPINCOUNT`` (the waiting); ``OVO_THREADS=off`` sets nothing.

Why there is no ``threads=`` config key for every command: the waiting can only be set before
torch loads, which ``import ovo`` does before Hydra composes any config, so such a key could
only change the count (``torch.set_num_threads``), not the waiting that costs the 6x; and a new
training key would enter every checkpoint's config and the standalone recipe digest
(:mod:`ovo.standalone`), so existing ranking stores would no longer be reused. The environment
variables work for every command and reach what it starts (DataLoader workers, ``ovo.rank``'s
trainings, Hydra multirun jobs). ``ovo.latency threads=N`` and ``ovo.rank threads_per_job=N``
keep their meaning: they set the count after this default, so they win.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

SPIN_COUNT = "1000"  # spins before an idle thread sleeps: ~12 us here (libgomp: 300,000, ~4 ms)
COUNT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SWITCH = "OVO_THREADS"  # "off": set nothing (torch's own default)
# What an ovo process set, as "VAR=value,...": its children (DataLoader workers, subprocess
# commands, SLURM jobs submitted from a login node) recompute these instead of taking them for
# the user's own settings.
MARK = "OVO_THREADS_SET"
CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class Threads:
    """What :func:`configure` decided for one environment."""

    cpus: int  # CPUs this process may use (affinity mask and cgroup quota)
    exported: tuple[tuple[str, str], ...]  # the variables ovo set
    kept: tuple[tuple[str, str], ...]  # the user's own settings, left alone
    late: bool  # torch was loaded first: the settings reach only the processes this one starts

    def describe(self) -> str:
        """One line for logs and reports."""
        said = ", ".join(f"{k}={v}" for k, v in self.exported) or "nothing"
        kept = ", ".join(f"{k}={v}" for k, v in self.kept)
        line = f"ovo threads: {self.cpus} usable CPUs; set {said}"
        line += f"; kept the user's {kept}" if kept else ""
        return line + (
            "; torch was imported first (applies to child processes)" if self.late else ""
        )


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> float | None:
    """CPUs' worth of time this process's cgroup quota allows, the smallest over its cgroup and
    its ancestors (v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None when
    there is no quota."""
    limits = []
    for top, path in _cgroup_dirs(root, self_cgroup):
        here = top / path.strip("/")
        while True:  # a limit on any ancestor caps this cgroup too
            limit = _read_limit(here)
            if limit is not None:
                limits.append(limit)
            if here == top or top not in here.parents:
                break
            here = here.parent
    return min(limits, default=None)


def _cgroup_dirs(root: Path, self_cgroup: Path) -> list[tuple[Path, str]]:
    """(hierarchy root, this process's path in it) for v2 and v1's cpu controller. Inside a
    container the path may name the host's hierarchy while the container's own cgroup is mounted
    at the root; the walk up to the root covers both."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        lines = ["0::/"]
    dirs = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2]
        if not controllers:  # v2's unified hierarchy
            dirs.append((root, path))
        elif "cpu" in controllers.split(","):
            dirs.append((root / controllers, path))
    return dirs


def _read_limit(directory: Path) -> float | None:
    try:
        if (directory / "cpu.max").is_file():
            quota, period = (directory / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 else None
    except (OSError, ValueError, ZeroDivisionError):
        return None


def usable_cpus(
    affinity: int | None = None, root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP
) -> int:
    """CPUs this process may use: its affinity mask (``taskset``, SLURM, cpusets; ``affinity``
    overrides it) capped by the cgroup CPU quota, rounded down (a thread over the quota is
    throttled with the others waiting on it), at least 1."""
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            affinity = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root, self_cgroup)
    cpus = affinity if limit is None else min(affinity, math.floor(limit))
    return max(1, cpus)


def configure(
    env: MutableMapping[str, str] | None = None,
    threads: int | None = None,
    cpus: int | None = None,
) -> Threads:
    """Set ovo's threading default in ``env`` (``os.environ``) and say what was decided.

    ``threads``: an explicit intra-op thread count; it wins over the environment. ``cpus``:
    the usable CPU count (default :func:`usable_cpus`). A variable the environment already sets
    is the user's and is kept, unless this environment's ``OVO_THREADS_SET`` records that an ovo
    parent process set it to that value.
    """
    env = os.environ if env is None else env
    late = env is os.environ and "torch" in sys.modules
    switch = env.get(SWITCH, "").strip().lower()
    if switch not in ("", "auto", "off"):
        raise _config_error(
            f"{SWITCH}={env[SWITCH]!r}: use 'off' (leave torch's threading alone) or unset it; "
            "set a thread count with OMP_NUM_THREADS=N"
        )
    if threads is not None and threads < 1:
        raise _config_error(f"threads={threads} must be at least 1")
    cpus = usable_cpus() if cpus is None else cpus
    inherited = _inherited(env)
    for var in inherited:  # an ovo parent's default is recomputed, not kept as the user's
        del env[var]
    wanted: dict[str, str] = {}
    if switch != "off":
        if not any(v in env for v in WAIT_VARS):
            wanted["GOMP_SPINCOUNT"] = SPIN_COUNT
        if not any(v in env for v in COUNT_VARS):
            wanted["OMP_NUM_THREADS"] = str(cpus)
    if threads is not None:  # explicit: over the user's count too (torch reads MKL's last)
        for var in COUNT_VARS:
            if var == "OMP_NUM_THREADS" or var in env:
                wanted[var] = str(threads)
    kept = tuple((k, env[k]) for k in (*COUNT_VARS, *WAIT_VARS) if k in env and k not in wanted)
    env.update(wanted)
    if wanted:
        env[MARK] = ",".join(f"{k}={v}" for k, v in wanted.items())
    else:
        env.pop(MARK, None)
    return Threads(cpus, tuple(wanted.items()), kept, late)


def _config_error(message: str) -> Exception:
    from ovo.errors import ConfigError  # only when raising: this module loads with no package

    return ConfigError(message)


def _inherited(env: Mapping[str, str]) -> list[str]:
    """The variables ``env`` still holds at the value an ovo parent process set them to."""
    marked = dict(p.split("=", 1) for p in env.get(MARK, "").split(",") if "=" in p)
    return [k for k, v in marked.items() if env.get(k) == v]


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one thread per loader worker, for torch (torch's own worker
    loop sets it too) and for whatever the worker loads or starts (``OMP_NUM_THREADS=1``), so
    ``num_workers`` workers beside the training do not each start a thread per core."""
    import torch

    os.environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    torch.set_num_threads(1)


def _on_import() -> Threads:
    """:func:`configure` for this process; a bad ``OVO_THREADS`` under ``python -m ovo.<command>``
    is one ``ovo: error:`` line and exit status 2, as every command's user errors are."""
    try:
        return configure()
    except ValueError as err:  # ConfigError
        if sys.argv[:1] != ["-m"]:  # imported by a script or a notebook: a plain exception
            raise
        print(f"ovo: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


APPLIED: Threads = _on_import()
"""What ``import ovo`` decided for this process."""
