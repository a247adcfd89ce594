"""Threading defaults on a shared CPU: the quickstart step loop quiet and beside another torch
process, with torch's own default (``old``: ``OVO_THREADS=off``), ovo's default (``new``,
:mod:`ovo.threads`) and ``OMP_NUM_THREADS=1`` (``omp1``, the reference under load).

libgomp reads its settings once, when torch loads it, so each condition is its own fresh
process. All of them start together, build the quickstart run and warm up; then they take turns
timing windows of a fixed number of training steps, on command (a step count on stdin, the
seconds back on stdout), so every condition runs between the same others and start-up never
overlaps a timed window. The load is one more torch process with torch's default threads and
waiting (env cleared of ovo's settings, ovo not imported), a matmul + GELU loop, paused
(SIGSTOP) for the quiet windows and resumed (SIGCONT) for the loaded ones: quiet and loaded
windows interleave too. Each repeat rotates the order of the conditions and of the phases; a
ratio is two windows of the same repeat and phase.

Nothing here imports torch or ovo at module level: a child's first import must be the one it
measures.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .child import REPO, python_argv
from .report import Row

# What a child's env is cleared of before its condition is set: the OpenMP/MKL settings a user
# or the bench's own `import ovo` exported.
CLEARED = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "OVO_THREADS")
CONDITIONS: dict[str, dict[str, str]] = {
    "old": {"OVO_THREADS": "off"},
    "new": {},
    "omp1": {"OMP_NUM_THREADS": "1"},
}
REFERENCE = {"quiet": "old", "loaded": "omp1"}  # what each phase's ratios divide by
TARGET = {"quiet": "<= 1.05", "loaded": "<= 1.2"}  # of new over the reference
TAG = "@threads "  # a protocol line on a child's stdout (anything else there is ignored)
LOAD = (
    "import os, torch\n"
    "parent = os.getppid()\n"
    "x, w1, w2 = torch.randn(1024, 128), torch.randn(128, 512), torch.randn(512, 128) / 23\n"
    "print('running', flush=True)\n"
    "while os.getppid() == parent:\n"  # the bench died: stop
    "    for _ in range(20):\n"
    "        x = torch.tanh(torch.nn.functional.gelu(x @ w1) @ w2)\n"
)


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}
    return env | {"WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"} | dict(extra)


def measure(args) -> list[Row]:
    """Rows of each condition's seconds per step over its phase's reference, median of the
    repeats with min-max (quick: toy workload, one short repeat, for the smoke test)."""
    quick = bool(args.quick)
    workload = "toy" if quick else "quickstart"
    steps, warmup, repeats = (2, 1, 1) if quick else (args.threads_steps, 5, args.threads_repeats)
    before = machine_load()
    seconds, others = run(CONDITIONS, workload, steps, warmup, repeats)
    meta = {"steps": steps, "warmup": warmup, "before": before, "after": machine_load()}
    return rows(seconds, others, workload, meta)


def run(
    conditions: Mapping[str, Mapping[str, str]],
    workload: str,
    steps: int,
    warmup: int,
    repeats: int,
    phases: Sequence[str] = tuple(REFERENCE),
    echo: Callable[[str], None] = lambda line: print(line, flush=True),
) -> tuple[dict[str, dict[str, list[float]]], list[float]]:
    """(seconds per step by phase and condition, one entry per repeat; the CPU seconds per
    second that processes other than the bench's used during each window: what else ran)."""
    names = list(conditions)
    seconds: dict[str, dict[str, list[float]]] = {p: {c: [] for c in names} for p in phases}
    others: list[float] = []
    load = _start_load()
    children = {c: _start_child(conditions[c], workload, warmup) for c in names}
    try:
        for c, child in children.items():
            _answer(child, c)  # "ready": built and warmed up
        ours = {os.getpid(), load.pid, *(child.pid for child in children.values())}
        for rep in range(repeats):
            for phase in list(phases)[:: 1 if rep % 2 == 0 else -1]:
                load.send_signal(signal.SIGCONT if phase == "loaded" else signal.SIGSTOP)
                shift = rep % len(names)
                for c in names[shift:] + names[:shift]:
                    child = children[c]
                    before, start = _cpu_ticks(ours), time.perf_counter()
                    child.stdin.write(f"{steps}\n")
                    child.stdin.flush()
                    per_step = float(_answer(child, c)) / steps
                    seconds[phase][c].append(per_step)
                    others.append(_cpu_since(before, ours) / (time.perf_counter() - start))
                    echo(
                        f"[threads] {phase:6s} {c:8s} {per_step * 1e3:8.1f} ms/step "
                        f"(other processes: {others[-1]:.2f} CPUs busy)"
                    )
    finally:
        for child in children.values():
            if child.poll() is None:
                child.stdin.close()  # the child exits at its next read
        for child in children.values():
            child.wait()
        load.send_signal(signal.SIGCONT)
        load.kill()
        load.wait()
    return seconds, others


def rows(
    seconds: Mapping[str, Mapping[str, Sequence[float]]],
    others: Sequence[float],
    workload: str,
    meta: Mapping,
) -> list[Row]:
    out = []
    for phase, ref in REFERENCE.items():
        base = seconds[phase][ref]
        for cond, times in seconds[phase].items():
            if cond == ref:
                continue
            ratios = [t / b for t, b in zip(times, base)]
            out.append(
                Row(
                    f"step time, {cond} / {ref} threading ({phase})",
                    f"{workload}, {len(ratios)} repeats",
                    statistics.median(ratios),
                    TARGET[phase] if cond == "new" else "",
                    detail={
                        "min": min(ratios),
                        "max": max(ratios),
                        "s_per_step": {c: list(t) for c, t in seconds[phase].items()},
                        # CPUs other processes kept busy during the windows: min, median, max
                        "others_cpus": [min(others), statistics.median(others), max(others)],
                        **meta,
                    },
                )
            )
    return out


def machine_load() -> dict:
    """The load averages and the busiest processes (what else ran beside the measurement)."""
    ps = subprocess.run(
        ["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True, check=False
    )
    busy = [" ".join(line.split())[:120] for line in ps.stdout.splitlines()[1:7]]
    return {"load_average": [round(x, 2) for x in os.getloadavg()], "busiest": busy}


def _cpu_ticks(ours: set[int]) -> dict[int, int]:
    """User + system clock ticks of every process not in ``ours`` (Linux ``/proc``)."""
    ticks = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if name.isdigit() and int(name) not in ours:
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # exited meanwhile
                continue
            ticks[int(name)] = int(fields[11]) + int(fields[12])
    return ticks


def _cpu_since(before: dict[int, int], ours: set[int]) -> float:
    """CPU seconds processes not in ``ours`` used since ``before`` (those that exited meanwhile
    are missed)."""
    now = _cpu_ticks(ours)
    return sum(t - before.get(pid, 0) for pid, t in now.items()) / os.sysconf("SC_CLK_TCK")


def _start_load() -> subprocess.Popen:
    load = subprocess.Popen(
        [sys.executable, "-c", LOAD], env=clean_env({}), stdout=subprocess.PIPE, text=True
    )
    load.stdout.readline()  # torch imported and the loop started
    load.send_signal(signal.SIGSTOP)
    return load


def _start_child(extra: Mapping[str, str], workload: str, warmup: int) -> subprocess.Popen:
    code = f"from ovo_bench import threads; threads.child({workload!r}, {warmup})"
    return subprocess.Popen(
        python_argv(code),
        cwd=REPO,
        env=clean_env(extra),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _answer(child: subprocess.Popen, name: str) -> str:
    for line in child.stdout:
        if line.startswith(TAG):
            return line[len(TAG) :].strip()
    raise RuntimeError(f"threads bench child {name} stopped: exit code {child.wait()}")


class Windows:
    """A child's side of the protocol, called before every training step: after ``warmup``
    steps it says ``ready`` and then times windows of the step counts read from stdin."""

    def __init__(self, warmup: int, at_exit: Callable[[], None] = lambda: None) -> None:
        self.warmup, self.left, self.start, self.at_exit = warmup, 0, None, at_exit

    def before_step(self) -> None:
        if self.warmup > 0:
            self.warmup -= 1
            return
        if self.left == 0:
            said = "ready" if self.start is None else repr(time.perf_counter() - self.start)
            print(TAG + said, flush=True)
            line = sys.stdin.readline().strip()
            if not line:  # the bench is done: no need to unwind the training loop
                self.at_exit()
                os._exit(0)
            self.left, self.start = int(line), time.perf_counter()
        self.left -= 1


def child(workload: str, warmup: int) -> None:
    """One condition's process: ``workload``'s steps, timed in windows on command."""
    windows = Windows(warmup)
    if workload == "toy":
        _toy(windows)
    else:
        _quickstart(windows)


def _toy(windows: Windows) -> None:
    """A few small matmuls per step, behind what ``import ovo`` does first (ovo/threads.py loaded
    by path: the smoke test's children skip the package's slow imports)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ovo_threads", REPO / "src/ovo/threads.py")
    module = sys.modules["ovo_threads"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import torch

    x, w = torch.randn(256, 64), torch.randn(64, 64) / 8
    while True:
        windows.before_step()
        for _ in range(10):
            x = torch.tanh(x @ w)


def _quickstart(windows: Windows) -> None:
    """``python -m ovo.train experiment=quickstart``'s training steps (Lightning loop, digits
    loader, OVO step), without validation, checkpoints or logging."""
    import ovo  # noqa: F401  # isort: skip  (first: its threading default, before torch loads)
    import shutil
    import tempfile

    import lightning as L
    from hydra import compose, initialize_config_dir

    from ovo.commands.train import build_module, instantiate
    from ovo.data.base import datamodule_from_config
    from ovo.paths import conf_dir
    from ovo.settings import plain

    class Steps(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            windows.before_step()

    tmp = tempfile.mkdtemp()
    windows.at_exit = lambda: shutil.rmtree(tmp, ignore_errors=True)
    overrides = [
        "experiment=quickstart",
        "logger=none",
        "callbacks=none",
        f"paths.output_dir={tmp}",
        f"paths.log_dir={tmp}",
        f"trainer.default_root_dir={tmp}",
        "trainer.max_epochs=100000",  # until the bench says stop
        "+trainer.limit_val_batches=0",
        "+trainer.num_sanity_val_steps=0",
        "+trainer.enable_checkpointing=false",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
    ]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    L.seed_everything(0, verbose=False)
    datamodule = datamodule_from_config(plain(cfg.data))
    module = build_module(cfg, datamodule)
    trainer = instantiate(cfg.trainer, callbacks=[Steps()], logger=False)
    trainer.fit(module, datamodule=datamodule)
