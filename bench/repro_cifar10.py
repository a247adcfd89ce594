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

    make repro                                   # 4 methods, seed 0 (about 1.3 h on 2 cores)
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
    p.add_argument(
        "--panel-only",
        action="store_true",
        help="train and score the panel only, no search or from-scratch runs (extra seeds)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild the report from what --seeds/--methods runs have finished",
    )
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
        "seed=0",  # draws the panel's random archs: the same for every method and seed
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
            if args.panel_only:
                continue
            stages.append(
                (
                    f"search {m} seed {seed}",
                    search_cmd(ckpt(d / "train"), d / "search", args),
                    d / "search",
                )
            )
        parallel(stages, args.jobs)
        if args.panel_only:
            continue
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
    """Everything the report shows, read back from the stages' outputs. A (seed, method) whose
    panel is not scored is left out; one without a search (``--panel-only``) has no ``found``."""
    seeds: dict[str, Any] = {}
    for seed in args.seeds:
        base = args.out / f"seed{seed}"
        per_method: dict[str, Any] = {}
        for m in args.methods:
            d = base / m
            if not (d / "panel" / "done.json").is_file():
                continue
            panel = load_json(d / "panel" / "evaluation.json")["rows"]
            per_method[m] = {
                "train_wall_s": load_json(d / "train" / "done.json")["wall_s"],
                "panel_wall_s": load_json(d / "panel" / "done.json")["wall_s"],
                "panel": {
                    r["name"]: {k: r[k] for k in ("arch", "params", "macs", "acc1", "acc5")}
                    for r in panel
                },
                "panel_mean_acc1": statistics.fmean(r["acc1"] for r in panel),
                "panel_std_acc1": statistics.pstdev(r["acc1"] for r in panel),
                "found": None,
            }
            if not (d / "search" / "done.json").is_file():
                continue
            search = load_json(d / "search" / "results.json")
            key = arch_key(d / "search" / "best_arch.yaml")
            sdir = base / "scratch" / key
            scratch = None
            if (sdir / "eval" / "done.json").is_file():
                scratch = load_json(sdir / "eval" / "evaluation.json")["rows"][0]
            best = search["best"]
            per_method[m]["search_wall_s"] = load_json(d / "search" / "done.json")["wall_s"]
            per_method[m]["found"] = {
                "arch": key,
                "params": best["params"],
                "macs": best["flops"],
                "search_acc1": best.get("fitness"),
                "inherited_acc1": best.get("val_acc1"),
                "scratch_acc1": scratch["acc1"] if scratch else None,
                "scratch_train_wall_s": (
                    load_json(sdir / "train" / "done.json")["wall_s"] if scratch else None
                ),
            }
        if per_method:
            seeds[str(seed)] = per_method
    if not seeds:
        raise SystemExit(f"no finished runs under {args.out}: run without --report-only first")
    return {"preset": PRESET, "params_max": args.params_max, "seeds": seeds}


def _methods(data: dict[str, Any]) -> list[str]:
    """Methods in METHODS order, those with at least one scored seed."""
    present = {m for per_method in data["seeds"].values() for m in per_method}
    return [m for m in METHODS if m in present]


def _runs(data: dict[str, Any], method: str) -> list[dict[str, Any]]:
    return [s[method] for s in data["seeds"].values() if method in s]


def write_report(data: dict[str, Any], out: Path) -> str:
    methods = _methods(data)
    runs = {m: _runs(data, m) for m in methods}
    first = runs[methods[0]][0]["panel"]
    names = list(first)

    def acc(m: str, name: str) -> float:
        return statistics.fmean(r["panel"][name]["acc1"] for r in runs[m])

    header = [f"{m} ({len(runs[m])} seed{'s' if len(runs[m]) > 1 else ''})" for m in methods]
    lines = [
        f"CIFAR-10 test top-1 (%) of a fixed panel of {len(names)} subnets with inherited "
        f"weights (`experiment={PRESET}`, last checkpoint); the mean over seeds where a method "
        "has several.",
        "",
        "| subnet | params (M) | MMACs | " + " | ".join(header) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    wins = dict.fromkeys(methods, 0)
    for name in names:
        row = first[name]
        accs = {m: acc(m, name) for m in methods}
        top = max(accs.values())
        for m in methods:
            wins[m] += accs[m] == top  # ties count for every tied method
        cells = [f"**{accs[m]:.2f}**" if accs[m] == top else f"{accs[m]:.2f}" for m in methods]
        lines.append(
            f"| {name} `{row['arch']}` | {row['params'] / 1e6:.2f} | {row['macs'] / 1e6:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    means = {m: statistics.fmean(r["panel_mean_acc1"] for r in runs[m]) for m in methods}
    stds = {m: statistics.fmean(r["panel_std_acc1"] for r in runs[m]) for m in methods}
    lines.append(
        "| **panel mean ± std over subnets** | | | "
        + " | ".join(
            (f"**{means[m]:.2f}**" if means[m] == max(means.values()) else f"{means[m]:.2f}")
            + f" ± {stds[m]:.2f}"
            for m in methods
        )
        + " |"
    )
    lines.append(
        f"| subnets where best (of {len(names)}) | | | "
        + " | ".join(str(wins[m]) for m in methods)
        + " |"
    )
    lines += [
        "",
        "Panel mean per seed:",
        "",
        "| method | " + " | ".join(f"seed {k}" for k in data["seeds"]) + " |",
        "|---|" + "---|" * len(data["seeds"]),
    ]
    for m in methods:
        cells = [f"{s[m]['panel_mean_acc1']:.2f}" if m in s else "" for s in data["seeds"].values()]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    found = [
        (seed, m, per_method[m]["found"])
        for seed, per_method in data["seeds"].items()
        for m in methods
        if per_method.get(m, {}).get("found")
    ]
    lines += [
        "",
        f"Searched subnet (params <= {data['params_max']}; fitness = top-1 on the held-out "
        "search split of the training images), scored on the test split with inherited weights "
        "and as the same arch trained from scratch (`fixed_arch`, same data and epochs):",
        "",
        "| method | seed | found arch | params (M) | MMACs | search-split top-1 | "
        "test top-1 inherited | test top-1 from scratch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, m, f in found:
        lines.append(
            f"| {m} | {seed} | `{f['arch']}` | {f['params'] / 1e6:.3f} | "
            f"{f['macs'] / 1e6:.1f} | {_fmt(f['search_acc1'])} | "
            f"{_fmt(f['inherited_acc1'])} | {_fmt(f['scratch_acc1'])} |"
        )
    if not found:
        lines.append("| (no search run: `--panel-only`) | | | | | | | |")
    lines += [
        "",
        "Wall time (minutes, 2-core CPU; stages ran two at a time, one thread each):",
        "",
        "| method | seed | train | panel eval | search | from-scratch train |",
        "|---|---|---|---|---|---|",
    ]
    for seed, per_method in data["seeds"].items():
        for m in methods:
            if m not in per_method:
                continue
            r, f = per_method[m], per_method[m]["found"] or {}
            lines.append(
                f"| {m} | {seed} | {r['train_wall_s'] / 60:.1f} | {r['panel_wall_s'] / 60:.1f} | "
                f"{_fmt(r.get('search_wall_s'), 60, 1)} | "
                f"{_fmt(f.get('scratch_train_wall_s'), 60, 1)} |"
            )
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value / scale:.{digits}f}"


def plot(data: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = "osD^v<>"
    for i, m in enumerate(_methods(data)):
        runs = _runs(data, m)
        names = sorted(runs[0]["panel"], key=lambda n: runs[0]["panel"][n]["params"])
        ax.plot(
            [runs[0]["panel"][n]["params"] / 1e6 for n in names],
            [statistics.fmean(r["panel"][n]["acc1"] for r in runs) for n in names],
            marker=markers[i % len(markers)],
            ms=4,
            ls="none",  # panel archs are not a curve: same params, other shapes
            color=f"C{i}",
            alpha=0.85,
            label=f"{m} ({len(runs)} seed{'s' if len(runs) > 1 else ''})",
        )
        for r in runs:
            f = r["found"]
            if not f:
                continue
            x = f["params"] / 1e6
            ax.scatter(
                x, f["inherited_acc1"], marker="*", s=160, color=f"C{i}", edgecolor="k", zorder=5
            )
            if f["scratch_acc1"] is not None:
                ax.scatter(x, f["scratch_acc1"], marker="x", s=70, color=f"C{i}", zorder=5)
    ax.set_xlabel("params (M)")
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.set_title("nano supernets, inherited weights\n(★ searched subnet, × same arch from scratch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "acc_vs_params.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.report_only:
        try:
            run(args)
        except RuntimeError as err:  # a stage failed: its log's tail says why
            raise SystemExit(f"repro: error: {err}") from None
    data = collect(args)
    (args.out / "report.json").write_text(json.dumps(data, indent=1))
    print(write_report(data, args.out))
    print(f"[repro] wrote {args.out / 'report.md'}, {plot(data, args.out)}")


if __name__ == "__main__":
    main()
