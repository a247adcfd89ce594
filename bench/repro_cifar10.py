"""Does online distillation help? OVO against weight sharing alone, on the real CIFAR-10 copy.

For every method and seed this trains one supernet with ``experiment=repro_cifar10_nano``
(identical data, epochs, seed and schedule; only ``distill`` differs), then:

1. scores a fixed panel of 22 subnets (min, max and 20 seeded random archs, the same for every
   method) with inherited weights on the CIFAR-10 test split (``ovo.evaluate``);
2. searches the supernet under one params budget (``ovo.search``: fitness on the held-out
   search split of the training images, never on test), and
3. trains every distinct found arch from scratch as a standalone model for the same epochs
   (``fixed_arch=best_arch.yaml distill=none``) and scores it on test.

Each stage runs the real command lines in subprocesses and is skipped when its ``done.json``
exists, so an interrupted reproduction resumes where it stopped. ``report.md``, ``report.json``
and ``acc_vs_params.png`` gather the results.

    make repro                                   # 4 methods, seed 0 (about 1.5 h on 2 cores)
    python bench/repro_cifar10.py --seeds 0 1    # two seeds
    python bench/repro_cifar10.py --methods ovo autoformer --jobs 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# method name -> the train overrides that make it; everything else is the preset's
METHODS: dict[str, list[str]] = {
    "autoformer": ["distill=none"],  # one uniform subnet per step on labels (AutoFormer)
    "autoformer_x2": ["distill=none", "distill.subnets_per_step=2"],  # same passes as OVO
    "ovo": ["distill=ovo"],  # default: teacher from the upper pool, KL, alpha 1
    "ovo_max": ["distill=max"],  # the largest subnet teaches (inplace distillation)
}
PANEL_RANDOM = 20
PRESET = "repro_cifar10_nano"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--params-max", default="0.5M", help="the search's params budget")
    p.add_argument("--generations", type=int, default=10, help="evolution generations")
    p.add_argument(
        "--search-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra override for every search (e.g. population=10)",
    )
    p.add_argument("--jobs", type=int, default=2, help="stages run side by side (1 thread each)")
    p.add_argument("--out", type=Path, default=Path("outputs/repro_cifar10"))
    p.add_argument(
        "--train-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra override for every training run (e.g. data.root=..., trainer.max_epochs=1)",
    )
    p.add_argument(
        "--data-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="data override for evaluate/search (e.g. eval limits in smoke tests)",
    )
    p.add_argument("--report-only", action="store_true", help="only rebuild the report")
    return p.parse_args(argv)


def run_stage(name: str, cmd: list[str], stage_dir: Path, threads: int) -> dict[str, Any]:
    """Run one command once: skipped when ``stage_dir/done.json`` exists; fails loudly."""
    done = stage_dir / "done.json"
    if done.is_file():
        return json.loads(done.read_text())
    stage_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "offline"}
    print(f"[repro] start {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with (stage_dir / "stage.log").open("w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    seconds = time.perf_counter() - start
    if rc != 0:
        tail = (stage_dir / "stage.log").read_text().splitlines()[-15:]
        raise RuntimeError(
            f"{name} failed (exit {rc}); see {stage_dir / 'stage.log'}:\n" + "\n".join(tail)
        )
    record = {"stage": name, "command": cmd, "wall_s": round(seconds, 1), "threads": threads}
    done.write_text(json.dumps(record, indent=1))
    print(f"[repro] done {name} in {seconds / 60:.1f} min", flush=True)
    return record


def py(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def train_cmd(run_dir: Path, seed: int, extra: list[str], overrides: list[str]) -> list[str]:
    return py(
        "ovo.train",
        f"experiment={PRESET}",
        f"seed={seed}",
        "logger=csv",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={run_dir}",
        *extra,
        *overrides,
    )


def ckpt(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"  # the end of training: no choice made on test


def evaluate_cmd(ckpt_path: Path, arch: str, out: Path, data: list[str]) -> list[str]:
    return py(
        "ovo.evaluate",
        f"ckpt_path={ckpt_path}",
        f"arch={arch}",
        "split=val",  # the preset's val split is CIFAR-10's test split
        "seed=0",
        f"hydra.run.dir={out}",
        *[f"++data.{d}" for d in data],
    )


def search_cmd(ckpt_path: Path, out: Path, args: argparse.Namespace) -> list[str]:
    return py(
        "ovo.search",
        f"ckpt_path={ckpt_path}",
        f"constraints.params_max={args.params_max}",
        f"generations={args.generations}",
        *args.search_override,
        "wandb.enabled=false",
        f"hydra.run.dir={out}",
        *[f"++data.{d}" for d in args.data_override],
    )


def parallel(tasks: list[tuple[str, list[str], Path]], jobs: int) -> None:
    threads = 1 if jobs > 1 else max(os.cpu_count() or 1, 1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for f in [pool.submit(run_stage, n, c, d, threads) for n, c, d in tasks]:
            f.result()


def run(args: argparse.Namespace) -> None:
    out = args.out
    panel_arch = f"[min,max,random:{PANEL_RANDOM}]"
    for seed in args.seeds:
        base = out / f"seed{seed}"
        methods = {m: base / m for m in args.methods}
        parallel(
            [
                (
                    f"train {m} seed {seed}",
                    train_cmd(d / "train", seed, METHODS[m], args.train_override),
                    d / "train",
                )
                for m, d in methods.items()
            ],
            args.jobs,
        )
        stages = []
        for m, d in methods.items():
            stages.append(
                (
                    f"panel {m} seed {seed}",
                    evaluate_cmd(ckpt(d / "train"), panel_arch, d / "panel", args.data_override),
                    d / "panel",
                )
            )
            stages.append(
                (
                    f"search {m} seed {seed}",
                    search_cmd(ckpt(d / "train"), d / "search", args),
                    d / "search",
                )
            )
        parallel(stages, args.jobs)
        # one from-scratch model per distinct found arch (methods often find the same one)
        scratch: dict[str, Path] = {}
        for d in methods.values():
            arch_file = d / "search" / "best_arch.yaml"
            scratch.setdefault(arch_key(arch_file), arch_file)
        tasks = []
        for key, arch_file in scratch.items():
            sdir = base / "scratch" / key
            tasks.append(
                (
                    f"scratch {key} seed {seed}",
                    train_cmd(
                        sdir / "train",
                        seed,
                        ["distill=none", f"fixed_arch={arch_file.resolve()}"],
                        args.train_override,
                    ),
                    sdir / "train",
                )
            )
        parallel(tasks, args.jobs)
        parallel(
            [
                (
                    f"scratch eval {key} seed {seed}",
                    evaluate_cmd(
                        ckpt(base / "scratch" / key / "train"),
                        str(arch_file.resolve()),
                        base / "scratch" / key / "eval",
                        args.data_override,
                    ),
                    base / "scratch" / key / "eval",
                )
                for key, arch_file in scratch.items()
            ],
            args.jobs,
        )


def arch_key(arch_file: Path) -> str:
    from ovo.space import Arch

    arch = Arch.from_yaml(arch_file)
    heads = "".join(map(str, arch.num_heads))
    ratios = "".join(f"{r:g}".replace(".", "") for r in arch.mlp_ratio)
    return f"e{arch.embed_dim}_d{arch.depth}_h{heads}_r{ratios}"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def collect(args: argparse.Namespace) -> dict[str, Any]:
    """Everything the report shows, read back from the stages' outputs."""
    seeds: dict[str, Any] = {}
    for seed in args.seeds:
        base = args.out / f"seed{seed}"
        per_method: dict[str, Any] = {}
        for m in args.methods:
            d = base / m
            panel = load_json(d / "panel" / "evaluation.json")["rows"]
            search = load_json(d / "search" / "results.json")
            key = arch_key(d / "search" / "best_arch.yaml")
            scratch_rows = load_json(base / "scratch" / key / "eval" / "evaluation.json")["rows"]
            best = search["best"] if "best" in search else None
            per_method[m] = {
                "train_wall_s": load_json(d / "train" / "done.json")["wall_s"],
                "panel_wall_s": load_json(d / "panel" / "done.json")["wall_s"],
                "search_wall_s": load_json(d / "search" / "done.json")["wall_s"],
                "panel": {
                    r["name"]: {k: r[k] for k in ("arch", "params", "macs", "acc1", "acc5")}
                    for r in panel
                },
                "panel_mean_acc1": statistics.fmean(r["acc1"] for r in panel),
                "panel_std_acc1": statistics.pstdev(r["acc1"] for r in panel),
                "found": {
                    "arch": key,
                    "params": scratch_rows[0]["params"],
                    "macs": scratch_rows[0]["macs"],
                    "search_acc1": _found_search_acc(search),
                    "inherited_acc1": _found_test_acc(search),
                    "scratch_acc1": scratch_rows[0]["acc1"],
                    "scratch_train_wall_s": load_json(
                        base / "scratch" / key / "train" / "done.json"
                    )["wall_s"],
                },
                "best_raw": best,
            }
        seeds[str(seed)] = per_method
    return {"preset": PRESET, "params_max": args.params_max, "seeds": seeds}


def _found_search_acc(search: dict[str, Any]) -> float | None:
    best = search.get("best") or {}
    return best.get("fitness")


def _found_test_acc(search: dict[str, Any]) -> float | None:
    best = search.get("best") or {}
    return best.get("val_acc1")


def write_report(data: dict[str, Any], out: Path) -> None:
    methods = list(next(iter(data["seeds"].values())))
    lines = [
        f"CIFAR-10 test top-1 (%), nano supernets (`experiment={PRESET}`), seeds "
        f"{', '.join(data['seeds'])}; mean over seeds where there are several.",
        "",
        "| subnet | params (M) | MMACs | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]

    def avg(values: list[float]) -> float:
        return statistics.fmean(values)

    seeds = list(data["seeds"].values())
    names = list(seeds[0][methods[0]]["panel"])
    for name in names:
        row = seeds[0][methods[0]]["panel"][name]
        accs = [avg([s[m]["panel"][name]["acc1"] for s in seeds]) for m in methods]
        top = max(accs)
        cells = [f"**{a:.2f}**" if a == top else f"{a:.2f}" for a in accs]
        lines.append(
            f"| {name} `{row['arch']}` | {row['params'] / 1e6:.2f} | {row['macs'] / 1e6:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append(
        "| **panel mean ± std** | | | "
        + " | ".join(
            f"{avg([s[m]['panel_mean_acc1'] for s in seeds]):.2f} ± "
            f"{avg([s[m]['panel_std_acc1'] for s in seeds]):.2f}"
            for m in methods
        )
        + " |"
    )
    wins = {m: 0 for m in methods}
    for name in names:
        accs = {m: avg([s[m]["panel"][name]["acc1"] for s in seeds]) for m in methods}
        for m in methods:
            wins[m] += accs[m] == max(accs.values())  # ties count for every tied method
    lines.append(
        f"| subnets where best (of {len(names)}, ties count for all) | | | "
        + " | ".join(str(wins[m]) for m in methods)
        + " |"
    )
    lines += [
        "",
        f"Searched subnet (params <= {data['params_max']}; fitness on the held-out search split):",
        "",
        "| method | seed | found arch | params (M) | MMACs | search-split top-1 | test top-1 inherited | test top-1 from scratch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, s in data["seeds"].items():
        for m in methods:
            f = s[m]["found"]
            lines.append(
                f"| {m} | {seed} | `{f['arch']}` | {f['params'] / 1e6:.3f} | {f['macs'] / 1e6:.1f} | "
                f"{_fmt(f['search_acc1'])} | {_fmt(f['inherited_acc1'])} | {f['scratch_acc1']:.2f} |"
            )
    lines += ["", "Wall time (minutes; stages ran two at a time, one thread each):", ""]
    lines.append("| method | seed | train | panel eval | search | scratch train |")
    lines.append("|---|---|---|---|---|---|")
    for seed, s in data["seeds"].items():
        for m in methods:
            r = s[m]
            lines.append(
                f"| {m} | {seed} | {r['train_wall_s'] / 60:.1f} | {r['panel_wall_s'] / 60:.1f} | "
                f"{r['search_wall_s'] / 60:.1f} | {r['found']['scratch_train_wall_s'] / 60:.1f} |"
            )
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def plot(data: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "osD^v<>"
    for i, m in enumerate(next(iter(data["seeds"].values()))):
        for j, s in enumerate(data["seeds"].values()):
            rows = sorted(s[m]["panel"].values(), key=lambda r: r["params"])
            ax.plot(
                [r["params"] / 1e6 for r in rows],
                [r["acc1"] for r in rows],
                marker=markers[i % len(markers)],
                ms=4,
                lw=0.8,
                color=f"C{i}",
                alpha=0.85,
                label=m if j == 0 else None,
            )
            f = s[m]["found"]
            ax.scatter(
                f["params"] / 1e6,
                f["inherited_acc1"] or 0,
                marker="*",
                s=140,
                color=f"C{i}",
                edgecolor="k",
                zorder=5,
            )
            ax.scatter(
                f["params"] / 1e6, f["scratch_acc1"], marker="x", s=70, color=f"C{i}", zorder=5
            )
    ax.set_xlabel("params (M)")
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.set_title("nano supernets, inherited weights (★ found subnet, × same arch from scratch)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / "acc_vs_params.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.report_only:
        run(args)
    data = collect(args)
    (args.out / "report.json").write_text(json.dumps(data, indent=1))
    write_report(data, args.out)
    print(f"[repro] wrote {args.out / 'report.md'}, {plot(data, args.out)}")


if __name__ == "__main__":
    main()
