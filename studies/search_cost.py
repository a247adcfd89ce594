"""What a search costs: ``fitness=full`` against ``fitness=halving`` on one trained checkpoint, and
how well a latency table predicts the latency of whole exported subnets.

Halving: for every seed, the same search (strategy, budget, population, generations) runs with
both fitness modes through the real command (``python -m ovo.search``); the report gives the
images scored (arch x image forwards) and wall time of each, whether they found the same best
arch, the overlap of their top-10, and the regret: the full search's best fitness minus the
full-split fitness of halving's best arch. The fitness split's own noise, for scale, is the
binomial standard error of one arch's accuracy on it, sqrt(p (1 - p) / N).

Latency: ``python -m ovo.latency`` builds a table on this machine and measures random exported
subnets whole; the report gives the table's prediction error (target: within 10%).

    python studies/search_cost.py --ckpt outputs/rank_evidence/supernet/checkpoints/last.ckpt
    python studies/search_cost.py --ckpt CKPT --seeds 0 1 2 --params-max 0.5M
    python studies/search_cost.py --latency-only --space tiny --img-size 224 --patch-size 16
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from ovo.jobs import Job, Pool, python_module, run_checked


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, help="a trained supernet checkpoint (halving part)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--params-max", default="0.5M", help="the searches' params budget")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("outputs/search_cost"))
    p.add_argument("--latency-only", action="store_true", help="only the latency part")
    p.add_argument("--no-latency", action="store_true", help="only the halving part")
    p.add_argument("--space", default="tiny", help="latency part: the space")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--verify", type=int, default=20, help="random subnets measured whole")
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra override for every search (e.g. eval.max_batches=2)",
    )
    return p.parse_args(argv)


def search(args: argparse.Namespace, seed: int, fitness: str) -> dict[str, Any]:
    """One search through the real command, once: ``bench_done.json`` in its run directory
    marks it finished; returns its wall seconds and ``results.json``."""
    name = f"{fitness}-seed{seed}"
    cmd = python_module(
        "ovo.search",
        f"ckpt_path={args.ckpt}",
        f"paths.log_dir={args.out}",
        f"name={name}",
        f"seed={seed}",
        f"fitness={fitness}",
        f"constraints.params_max={args.params_max}",
        f"population={args.population}",
        f"generations={args.generations}",
        "wandb.enabled=false",
        *args.extra,
    )
    run_dir = args.out / "search" / name
    job = Job(name, tuple(cmd), run_dir, log_name="bench.log", done_name="bench_done.json")
    record = Pool(1, tag="search_cost").run([job])[0]
    if "results" not in record:  # written before ovo.jobs, the record held them
        record["results"] = json.loads((run_dir / "results.json").read_text())
    return record


def top_archs(results: dict[str, Any], k: int) -> list[str]:
    ranked = sorted(
        (e for e in results["evaluated"] if e.get("complete", True)),
        key=lambda e: (-e["fitness"], e["params"], e["flops"]),
    )
    return [json.dumps(e["arch"], sort_keys=True) for e in ranked[:k]]


def halving_report(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for seed in args.seeds:
        full, halving = search(args, seed, "full"), search(args, seed, "halving")
        f, h = full["results"], halving["results"]
        n = f["fitness"]["split_images"]
        p = f["best"]["fitness"] / 100
        rows.append(
            {
                "seed": seed,
                "split_images": n,
                "full_images": f["images_scored"],
                "halving_images": h["images_scored"],
                "images_ratio": h["images_scored"] / f["images_scored"],
                "full_wall_s": full["wall_s"],
                "halving_wall_s": halving["wall_s"],
                "full_search_s": f["search_seconds"],
                "halving_search_s": h["search_seconds"],
                "same_best": top_archs(f, 1) == top_archs(h, 1),
                "top10_overlap": len(set(top_archs(f, 10)) & set(top_archs(h, 10))) / 10,
                "full_best_fitness": f["best"]["fitness"],
                "halving_best_fitness": h["best"]["fitness"],
                "regret": f["best"]["fitness"] - h["best"]["fitness"],
                "fitness_se": 100 * math.sqrt(p * (1 - p) / n),
                "full_evaluated": f["num_evaluated"],
                "halving_evaluated": h["num_evaluated"],
                "halving_fully_scored": h["num_fully_scored"],
            }
        )
    summary = {
        "images_ratio_mean": statistics.fmean(r["images_ratio"] for r in rows),
        "regret_mean": statistics.fmean(r["regret"] for r in rows),
        "regret_max": max(r["regret"] for r in rows),
        "fitness_se_mean": statistics.fmean(r["fitness_se"] for r in rows),
        "same_best": sum(r["same_best"] for r in rows),
        "top10_overlap_mean": statistics.fmean(r["top10_overlap"] for r in rows),
    }
    return {"rows": rows, "summary": summary}


def latency_report(args: argparse.Namespace) -> dict[str, Any]:
    name = f"{args.space}-{args.img_size}px-b{args.batch_size}"
    cmd = python_module(
        "ovo.latency",
        f"space={args.space}",
        f"model.img_size={args.img_size}",
        f"model.patch_size={args.patch_size}",
        f"batch_size={args.batch_size}",
        f"verify={args.verify}",
        f"paths.log_dir={args.out}",
        f"name={name}",
    )
    run_dir = args.out / "latency" / name
    # measured again on every call (this machine, now): no done marker
    wall = run_checked(f"latency {name}", cmd, run_dir / "bench.log")
    table = json.loads((run_dir / "latency_table.json").read_text())
    verify = table["verify"]
    return {
        "table": str(run_dir / "latency_table.json"),
        "conditions": table["conditions"],
        "wall_s": wall,
        "subnets": len(verify["subnets"]),
        "mean_abs_error": verify["mean_abs_error"],
        "max_abs_error": verify["max_abs_error"],
        "errors": [s["error"] for s in verify["subnets"]],
    }


def print_report(report: dict[str, Any]) -> None:
    if "halving" in report:
        print(
            "\n| seed | images full | images halving | ratio | wall full / halving (s) | same best | top-10 overlap | regret (pts) | split SE (pts) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in report["halving"]["rows"]:
            print(
                f"| {r['seed']} | {r['full_images']:,} | {r['halving_images']:,} | "
                f"{r['images_ratio']:.3f} | {r['full_search_s']:.0f} / {r['halving_search_s']:.0f} | "
                f"{'yes' if r['same_best'] else 'no'} | {r['top10_overlap']:.1f} | "
                f"{r['regret']:+.2f} | {r['fitness_se']:.2f} |"
            )
        s = report["halving"]["summary"]
        print(
            f"\nmean images ratio {s['images_ratio_mean']:.3f}, mean regret {s['regret_mean']:+.2f} "
            f"(max {s['regret_max']:+.2f}) points vs the split's SE {s['fitness_se_mean']:.2f}; "
            f"same best in {s['same_best']} of {len(report['halving']['rows'])} seeds; top-10 "
            f"overlap {s['top10_overlap_mean']:.2f}"
        )
    if "latency" in report:
        lat = report["latency"]
        c = lat["conditions"]
        print(
            f"\nlatency table ({c['device']}, {c['threads']} threads, {c['dtype']}, batch "
            f"{c['batch']}, {c['tokens']} tokens): prediction error over {lat['subnets']} random "
            f"exported subnets mean {100 * lat['mean_abs_error']:.1f}%, max "
            f"{100 * lat['max_abs_error']:.1f}%"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    report: dict[str, Any] = {}
    if not args.latency_only:
        if args.ckpt is None or not args.ckpt.is_file():
            raise SystemExit("search_cost: error: --ckpt must name a trained checkpoint")
        report["halving"] = halving_report(args)
    if not args.no_latency:
        report["latency"] = latency_report(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print_report(report)
    print(f"\nwrote {args.out / 'report.json'}")
    return report


if __name__ == "__main__":
    main()
