"""ovo benchmark: the supernet against the same subnets as static timm models, in one run.

Every ratio compares two measurements taken interleaved in the same process (A, B, B, A, ...),
after warm-up, as medians of several repeats, so machine noise cancels instead of moving the
target. Prints one table and writes ``bench/results/bench.json``.

    make bench                         # full run (CPU: ~25 min on 2 cores; GPU: bf16, CUDA timing)
    python bench/run.py --quick        # one tiny repeat of every row (the smoke test)
    python bench/run.py --only 32px    # settings whose name contains "32px"
    python bench/run.py --profile min --only 32px   # torch.profiler: supernet vs static ops
    python bench/run.py --profile ovo --only 32px   # op counts: OVO step vs the static pair
    python bench/run.py --measures memory           # only the peak-memory rows
    python bench/run.py --measures compile ddp      # only the compile / DDP rows
    python bench/run.py --measures fwd_bwd ovo_step # parts of the speed measure
    python bench/run.py --measures anchor           # timm's vit_tiny beside ovo's AutoFormer-T
    python bench/run.py --measures threads          # threading defaults, quiet and under load

``threads`` is not in ``all``: it loads the machine on purpose (a second torch process) and
times the quickstart step loop in fresh processes (``bench/ovo_bench/threads.py``, ~4 min).

Settings: on a GPU batch 128 at 224px and 256 at 32px (bf16); on a CPU 16 and 64 (fp32).
Archs: the tiny space's min, mid and max subnets and the released AutoFormer-T
(``conf/subnets/autoformer_ti.yaml``). The measures live in ``bench/ovo_bench/``, one module
each. ``--out`` is rewritten after every row, so a run stopped at a time limit keeps its rows.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

BENCH = str(Path(__file__).resolve().parent)
if BENCH not in sys.path:  # ovo_bench, however this file was loaded
    sys.path.insert(0, BENCH)

from ovo_bench import (  # noqa: E402
    MEASURES,
    SPEED_PARTS,
    anchor,
    costs,
    memory,
    profile,
    proxy,
    speed,
    threads,  # noqa: E402
)
from ovo_bench import compile as compiled  # noqa: E402
from ovo_bench.fixture import Fixture, settings  # noqa: E402
from ovo_bench.report import Row, print_table, write_json  # noqa: E402

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny repeat per row (smoke test)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", default="", help="run settings whose name contains this")
    parser.add_argument("--out", default="bench/results/bench.json")
    parser.add_argument(
        "--measures",
        nargs="+",
        choices=("all", *MEASURES, *SPEED_PARTS, "threads"),
        default=["all"],
        help="speed: costs + its parts (fwd_bwd, inference, ovo_step, search); memory: peak "
        "step memory; compile: compiled supernet step and warm-up; anchor: timm's vit_tiny "
        "eager and compiled; ddp: DDP overhead; proxy: extra ops/MB per step; threads (not in "
        "all): threading defaults, quiet and beside another torch process",
    )
    parser.add_argument("--threads-steps", type=int, default=8, help="steps per timed window")
    parser.add_argument("--threads-repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument(
        "--profile",
        choices=("min", "mid", "max", "ovo"),
        help="min/mid/max: profile that arch's fwd+bwd; ovo: op counts of the OVO step against "
        "the static pair (deterministic); then exit",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 1, 0
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in machine), None) if bf16 else None
    # one fixture per setting, built when its turn comes (the previous one freed)
    fixtures = (
        Fixture(s, device) for s in settings(args.quick, device.type) if args.only in s.name
    )
    if args.profile:
        for fx in fixtures:
            if args.profile == "ovo":
                profile.op_counts(fx)
            else:
                profile.show(fx, args.profile, args)
        return []
    chosen = set(MEASURES) if "all" in args.measures else set(args.measures)
    parts = SPEED_PARTS if "speed" in chosen else tuple(p for p in SPEED_PARTS if p in chosen)
    meta = {"machine": machine, "torch": torch.__version__, "bf16": bf16, "repeats": args.repeats}
    rows: list[Row] = []

    def add(new_rows: Iterable[Row]) -> None:
        for row in new_rows:  # written at once: a run killed at its time limit keeps its rows
            rows.append(row)
            write_json(Path(args.out), meta, rows, quiet=True)
            value = "n/a" if row.value is None else f"{row.value:.4g}"
            print(f"[bench] {row.measure} | {row.setting} | {value} {row.unit}", flush=True)

    if "speed" in chosen:
        add(costs.measure(args.quick))
    if "threads" in args.measures:
        add(threads.measure(args))
    for fx in fixtures if chosen & set(MEASURES) else ():
        if parts:
            add(speed.measure(fx, args, peak, parts))
        if "memory" in chosen:
            add(memory.measure(fx, args))
        if "proxy" in chosen and device.type == "cpu":
            add(proxy.measure(fx))
        if "compile" in chosen:
            add(compiled.measure(fx, args))
        if "anchor" in chosen:
            add(anchor.measure(fx, args, peak))
        if "ddp" in chosen:
            from ovo_bench import ddp  # imports Lightning (seconds): only when its rows run

            add(ddp.measure(fx, args))
    repeats = [f"{args.repeats} repeats (median)"] if chosen & set(MEASURES) else []
    if "threads" in args.measures:
        repeats.append(f"threads: {args.threads_repeats} rounds of {args.threads_steps} steps")
    print_table(
        rows,
        f"ovo bench: {machine}, torch {torch.__version__}, {'bf16' if bf16 else 'fp32'}, "
        + ", ".join(repeats),
    )
    write_json(Path(args.out), meta, rows)
    return rows


if __name__ == "__main__":
    main()
