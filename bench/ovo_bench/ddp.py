"""DDP overhead: a data-parallel OVO training step (teacher + student + AdamW) against the same
step without data parallelism, in the same processes (gloo on a CPU, NCCL on GPUs).

``ovo_ddp`` is ovo's strategy: the supernet unwrapped, its gradients averaged by
:func:`ovo.training.ddp.average_gradients`, the very call ``SupernetDDPStrategy`` makes each
optimizer step. ``torch_ddp_unused`` is torch's ``DistributedDataParallel`` with
``find_unused_parameters=True`` over autograd's slice gradients (what ovo used before).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from ovo.training import ddp as distributed

from .child import REPO, python_argv
from .fixture import Fixture, find_setting
from .report import Row
from .steps import adamw, ovo_step
from .timing import sync

MODES = ("ovo_ddp", "torch_ddp_unused")


def measure(fx: Fixture, args) -> list[Row]:
    """Each mode at world size 1 and, on a CPU or with 2+ GPUs, 2; one thread per process,
    timed interleaved. At world size 2 the plain step runs on both ranks side by side, so the
    ratio is what DDP adds (collectives, waiting for the slower rank, the unused-parameter
    search), not what two processes sharing one machine cost each other."""
    device = fx.device
    worlds = [1] if device.type == "cuda" and torch.cuda.device_count() < 2 else [1, 2]
    modes = MODES
    if args.quick:  # the smoke test: the wiring of ovo's strategy, once
        worlds, modes = [2], ("ovo_ddp",)
    name = fx.setting.name
    rows = []
    for world in worlds:
        for mode in modes:
            seconds = _run(mode, world, name, args)
            rows.append(
                Row(
                    f"DDP step / plain step - 1 ({mode})",
                    f"tiny world {world} {name}",
                    seconds["parallel"] / seconds["plain"] - 1,
                    "<= 0.10" if mode == "ovo_ddp" and "224" in name else "",
                    detail={"ddp_step_s": seconds["parallel"], "plain_step_s": seconds["plain"]},
                )
            )
    return rows


def _run(mode: str, world: int, setting: str, args) -> dict[str, float]:
    """Median step seconds with and without ``mode``'s data parallelism over ``world`` fresh
    processes (:func:`child`)."""
    with tempfile.TemporaryDirectory() as tmp:
        out, init = f"{tmp}/seconds.json", f"{tmp}/init"
        reps = max(args.repeats, 1)
        procs = [
            subprocess.Popen(
                python_argv(
                    "from ovo_bench import ddp; "
                    f"ddp.child({rank}, {world}, {init!r}, {mode!r}, {setting!r}, "
                    f"{bool(args.quick)}, {reps}, {out!r})"
                ),
                cwd=REPO,
            )
            for rank in range(world)
        ]
        codes = [p.wait() for p in procs]
        if any(codes):
            raise RuntimeError(f"DDP benchmark {mode} x{world} failed: exit codes {codes}")
        return json.loads(Path(out).read_text())


def child(
    rank: int, world: int, init: str, mode: str, setting: str, quick: bool, reps: int, out: str
) -> None:
    """One process of a measurement: median seconds of an OVO training step with ``mode``'s
    data parallelism and of the same step without it (no collective, no wrapper), timed
    interleaved (ABBA) in this process, so the machine's drift between processes does not
    enter the ratio. Rank 0 writes them to ``out``."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    dist.init_process_group(
        "nccl" if cuda else "gloo", init_method=f"file://{init}", rank=rank, world_size=world
    )
    fx = Fixture(find_setting(setting, quick, device.type), device)
    net = fx.supernet
    opt = adamw(net.parameters())
    if mode == "torch_ddp_unused":
        # no SliceGrads attached to this net: autograd's slice backward, which DDP's hooks see
        model = DistributedDataParallel(net, find_unused_parameters=True)
        zero = lambda: opt.zero_grad(set_to_none=True)  # noqa: E731
        parallel = ovo_step(fx, model, zero, opt)
    else:
        grads = fx.slice_grads
        zero = grads.zero_
        # through the module, so a test that replaces the strategy's call sees this one too
        all_reduce = lambda: distributed.average_gradients(grads)  # noqa: E731
        parallel = ovo_step(fx, net, zero, opt, after_backward=all_reduce)
    # the plain step calls the module itself: a DDP wrapper's gradient hooks stay idle (no
    # forward went through the wrapper); the slice gradients are simply not averaged
    runs = {"parallel": parallel, "plain": ovo_step(fx, net, zero, opt)}
    times: dict[str, list[float]] = {"parallel": [], "plain": []}
    for i in range(reps + 1):
        for name in ("parallel", "plain") if i % 2 == 0 else ("plain", "parallel"):
            dist.barrier()  # both ranks start each timed step together
            sync(device)
            start = time.perf_counter()
            runs[name]()
            sync(device)
            if i >= 1:  # the first pair warms up
                times[name].append(time.perf_counter() - start)
    if rank == 0:
        medians = {k: statistics.median(v) for k, v in times.items()}
        Path(out).write_text(json.dumps(medians))
    dist.destroy_process_group()
