"""How well latency tables predict whole exported subnets, per runtime (torch eager and ONNX
Runtime) and batch size, beside the machine's own run-to-run spread.

For each runtime and batch: build the space's table (``ovo.latency.measure_table``, as
``python -m ovo.latency runtime=...`` does), time the same random exported subnets whole twice
(``measure_models_ms``; for onnxruntime each subnet exported whole to ONNX), and report the
table's prediction error against the first pass (mean, median, max, share within 10%) and the
second pass against the first (the spread no table can beat). ONNX files are exported once
and shared by both batch sizes (the batch dimension is dynamic).

Needs a quiet machine: every other process's load lands in the numbers. The issue's protocol
(tiny space, 32px, patch 4 as ovo_ti_cifar100, batch 1 and 64, 20 subnets; 20 timed calls per
part at batch 1, 5 at batch 64, where one call of a big subnet takes ~0.5 s on 2 cores) takes
about half an hour on a 2-core CPU (estimated; a third of it ONNX exports)::

    python bench/latency_runtimes.py                     # tables, error and spread per runtime
    python bench/latency_runtimes.py --quick             # a toy run (seconds): the script works

Writes ``<out>/report.json`` and ``<out>/table-<runtime>-b<batch>.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ovo.commands.latency import error_summary
from ovo.export import export_subnet
from ovo.latency import Conditions, measure_models_ms, measure_table
from ovo.latency.runtime import RUNTIMES, resolve_runtime
from ovo.space import SearchSpace, load_space
from ovo.supernet import SuperViT, ViTConfig

# --quick: one embed dim, two block shapes, 16px: a handful of small exports
QUICK_SPACE = SearchSpace([32], [1, 2], [1, 2], [2.0], head_dim=16, name="quick")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="tiny")
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    p.add_argument("--subnets", type=int, default=20, help="random exported subnets timed whole")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument(
        "--repeats",
        nargs="+",
        type=int,
        default=[20, 5],
        help="timed calls per part (median): one value, or one per batch size",
    )
    p.add_argument("--warmup", nargs="+", type=int, default=[5, 2], help="as --repeats")
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds (median round)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("outputs/latency_runtimes"))
    p.add_argument("--quick", action="store_true", help="toy sizes: checks the script runs")
    args = p.parse_args(argv)
    if args.quick:
        args.img_size, args.patch_size, args.num_classes = 16, 8, 5
        args.subnets, args.repeats, args.warmup, args.rounds = 3, [3], [1], 2
        args.batches = [1, 4]
    for key in ("repeats", "warmup"):
        values = getattr(args, key)
        if len(values) == 1:
            values = values * len(args.batches)
        if len(values) != len(args.batches):
            p.error(f"--{key}: give one value or one per batch size ({len(args.batches)})")
        setattr(args, key, dict(zip(args.batches, values)))
    return args


def compare(predicted: list[float], first: list[float], second: list[float]) -> dict[str, Any]:
    """The table's error against the first pass, and the second pass against the first."""
    return {
        "error": error_summary([p / m - 1 for p, m in zip(predicted, first)]),
        "spread": error_summary([b / a - 1 for a, b in zip(first, second)]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    space = QUICK_SPACE if args.quick else load_space(args.space)
    cfg = ViTConfig(
        img_size=args.img_size,
        patch_size=args.patch_size,
        num_classes=args.num_classes,
        drop_path_rate=0.0,
    )
    torch.manual_seed(args.seed)
    net = SuperViT(space, cfg)
    rng = random.Random(f"ovo-latency-runtimes/{args.seed}")
    archs = [space.sample(rng) for _ in range(args.subnets)]
    builds = [lambda a=arch: export_subnet(net, a) for arch in archs]
    # ONNX files depend on the space, model and subnets, not on the batch: one folder for both
    tag = f"{space.name}-{args.img_size}px-p{args.patch_size}-c{args.num_classes}-s{args.seed}"
    onnx_dir = args.out / "onnx" / f"{tag}-n{args.subnets}"
    device = torch.device("cpu")
    rows = []
    for runtime in args.runtimes:
        runtime, provider = resolve_runtime(runtime, None, device, torch.float32)
        for batch in args.batches:
            cond = Conditions(
                device,
                torch.float32,
                batch,
                args.repeats[batch],
                args.warmup[batch],
                args.rounds,
                runtime,
                provider,
                args.threads,
            )
            start = time.perf_counter()
            table = measure_table(space, cfg, space.head_dim, cond, export_dir=onnx_dir)
            table_s = time.perf_counter() - start
            path = args.out / f"table-{runtime}-b{batch}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(table.to_dict(), indent=1))
            first = measure_models_ms(builds, cfg, cond, export_dir=onnx_dir)
            second = measure_models_ms(builds, cfg, cond, export_dir=onnx_dir)
            predicted = [table.predict(a) for a in archs]
            parts = [table.sum_of_parts(a) for a in archs]
            row = {
                "runtime": runtime,
                "provider": provider,
                "batch": batch,
                "table": str(path),
                "table_s": table_s,
                "conditions": table.conditions.where(),
                "subnets": [
                    {"arch": a.to_dict(), "predicted_ms": p, "measured_ms": [m1, m2]}
                    for a, p, m1, m2 in zip(archs, predicted, first, second)
                ],
                "median_measured_ms": statistics.median(first),
                "calibration": table.calibration and table.calibration.to_dict(),
                "sum_of_parts_error": error_summary([p / m - 1 for p, m in zip(parts, first)]),
                **compare(predicted, first, second),
            }
            rows.append(row)
            print(f"{runtime} batch {batch}: {line(row)}", flush=True)
    report = {
        "repeats": args.repeats,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "space": space.name,
        "model": {"img_size": args.img_size, "patch_size": args.patch_size},
        "threads": args.threads or torch.get_num_threads(),
        "rows": rows,
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print_report(report)
    return report


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def line(row: dict[str, Any]) -> str:
    e, s, n = row["error"], row["spread"], len(row["subnets"])
    return (
        f"error mean {pct(e['mean_abs_error'])}, median {pct(e['median_abs_error'])}, max "
        f"{pct(e['max_abs_error'])}, {e['within_10pct']}/{n} within 10%; run-to-run spread "
        f"median {pct(s['median_abs_error'])}, max {pct(s['max_abs_error'])} "
        f"(table {row['table_s']:.0f}s); uncalibrated sum of parts: error mean "
        f"{pct(row['sum_of_parts_error']['mean_abs_error'])}, "
        f"{row['sum_of_parts_error']['within_10pct']}/{n} within 10%"
    )


def print_report(report: dict[str, Any]) -> None:
    c = report["rows"][0]["conditions"] if report["rows"] else {}
    print(
        f"\n{c.get('device')}, {report['threads']} threads, space {report['space']}, "
        f"{report['model']['img_size']}px patch {report['model']['patch_size']} "
        f"({c.get('tokens')} tokens), fp32, {len(report['rows'][0]['subnets'])} random "
        "exported subnets timed whole"
    )
    print(
        "\n| runtime | batch | median subnet (ms) | error mean | median | max | within 10% "
        "| spread mean | median | max | within 10% | sum of parts: error mean | within 10% |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        e, s, n = r["error"], r["spread"], len(r["subnets"])
        name = r["runtime"] if r["runtime"] == "torch" else f"{r['runtime']} ({r['provider']})"
        print(
            f"| {name} | {r['batch']} | {r['median_measured_ms']:.3g} | "
            f"{pct(e['mean_abs_error'])} | {pct(e['median_abs_error'])} | "
            f"{pct(e['max_abs_error'])} | {e['within_10pct']}/{n} | {pct(s['mean_abs_error'])} | "
            f"{pct(s['median_abs_error'])} | {pct(s['max_abs_error'])} | {s['within_10pct']}/{n} | "
            f"{pct(r['sum_of_parts_error']['mean_abs_error'])} | "
            f"{r['sum_of_parts_error']['within_10pct']}/{n} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
