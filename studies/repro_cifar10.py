"""Does online distillation help? OVO against weight sharing alone, on the real CIFAR-10 copy.

For every method and seed this trains one supernet with the preset (``--preset``:
``repro_cifar10_nano`` on a CPU, ``repro_cifar10_gpu`` on a GPU; identical data, epochs, seed and
schedule; only ``distill`` differs, and every method pins all its distill settings, so a change
of ovo's defaults never changes what a method name means in an old report), then:

1. scores a fixed panel of 22 subnets (min, max and 20 seeded random archs, the same for every
   method) with inherited weights (``ovo.evaluate``): on the validation split carved from the
   training images, which comparisons read, and on the test split, scored once for the
   reported numbers (the CPU preset carves no validation split: its val is the test split);
2. searches the supernet under one params budget (``ovo.search``: fitness on the held-out
   search split of the training images, never on test), and
3. trains every distinct found arch from scratch as a standalone model for the same epochs
   (``fixed_arch=best_arch.yaml distill=none``) and scores it on test.

Each stage runs the real command lines in subprocesses (an :class:`ovo.jobs.Pool`) and is skipped
when its ``done.json`` exists, so an interrupted reproduction resumes where it stopped (an
interrupted training from its last checkpoint). ``report.md``, ``report.json``
and ``acc_vs_params.png`` gather the results.

    make repro                                   # 4 methods, seed 0 (about 1.3 h on 2 cores)
    python studies/repro_cifar10.py --seeds 0 1    # two seeds
    python studies/repro_cifar10.py --methods ovo autoformer --jobs 1
    # one GPU, three supernets side by side, the default-deciding experiment (alpha 0.5 vs 1):
    python studies/repro_cifar10.py --preset repro_cifar10_gpu --methods ovo ovo_a05 \
        autoformer_x2 --seeds 0 1 2 --jobs 3 --panel-only

The report pairs methods per seed (difference of panel means on the validation split; over
seeds its mean, standard error and a sign test: the seed is the unit of replication, not the
subnet) and applies the rule for ``distill.alpha``'s default when ``ovo`` and ``ovo_a05`` ran.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ovo.jobs import Job, Pool, python_module, read_done
from ovo.space import Arch

# ovo's distillation settings as of this script's methods (DistillConfig at commit 465a06b)
PINNED = {
    "teacher": "sampled",
    "teacher_upper_k": 2,
    "num_random_students": 2,
    "subnets_per_step": 1,
    "loss": "kl",
    "alpha": 1.0,
    "tau": 1.0,
    "kd_start_epoch": 0,
    "alpha_div_min": -1.0,
    "alpha_div_max": 1.0,
    "alpha_div_clip": 5.0,
    "teacher_depth": "pool",
    "student_depth": "uniform",
}


def distill(**changes: object) -> list[str]:
    """Every distill setting, ``changes`` over the pinned values: a method means the same
    thing whatever ovo's defaults become."""
    return [f"distill.{k}={v}" for k, v in (PINNED | changes).items()]


# method name -> the train overrides that make it; everything else is the preset's
METHODS: dict[str, list[str]] = {
    "autoformer": distill(teacher="none"),  # one uniform subnet per step on labels (AutoFormer)
    "autoformer_x2": distill(teacher="none", subnets_per_step=2),  # same passes as OVO
    "ovo": distill(),  # teacher from the upper pool, KL, alpha 1
    "ovo_max": distill(teacher="max"),  # the largest subnet teaches (inplace distillation)
    "ovo_a05": distill(alpha=0.5),  # half KD, half labels for the student
    "ovo_adiv": distill(loss="alpha_div"),  # AlphaNet's adaptive alpha-divergence
    "sandwich": distill(teacher="sandwich"),  # BigNAS: max teaches min + 2 random students
    "larger": distill(teacher="larger"),  # a teacher at least as large as the student
}
DEFAULT_METHODS = ["autoformer", "autoformer_x2", "ovo", "ovo_max"]
PANEL_RANDOM = 20
# preset -> the splits its panel is scored on (val first: comparisons read it)
PRESETS = {"repro_cifar10_nano": ("val",), "repro_cifar10_gpu": ("val", "test")}
PRESET = "repro_cifar10_nano"
# pairs the report compares per seed (first minus second), where both ran
PAIRS = [
    ("ovo", "autoformer"),
    ("ovo", "autoformer_x2"),
    ("ovo_a05", "ovo"),
    ("ovo_a05", "autoformer_x2"),
    ("ovo_max", "ovo"),
    ("ovo_adiv", "ovo"),
    ("sandwich", "ovo"),
    ("larger", "ovo"),
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    p.add_argument(
        "--preset",
        default=PRESET,
        choices=list(PRESETS),
        help="repro_cifar10_nano (CPU, 6 epochs) or repro_cifar10_gpu (one GPU, 30 epochs, "
        "a carved validation split); default: %(default)s",
    )
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
    p.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="stages run side by side: on a CPU one thread each, on a GPU sharing it (the "
        "preset's data workers need cores / jobs CPU threads each)",
    )
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


def stage(name: str, cmd: list[str], stage_dir: Path) -> Job:
    """One command run once in ``stage_dir``: skipped when its ``done.json`` exists; a training
    interrupted after a checkpoint resumes from it (``ckpt_path=last``)."""
    train = cmd[2] == "ovo.train"
    return Job(
        name,
        tuple(cmd),
        stage_dir,
        log_name="stage.log",
        resume_file="checkpoints/last.ckpt" if train else None,
        resume_args=("ckpt_path=last",),
    )


def py(module: str, *args: str) -> list[str]:
    return python_module(module, *args)


def train_cmd(
    run_dir: Path, seed: int, extra: list[str], overrides: list[str], preset: str = PRESET
) -> list[str]:
    return py(
        "ovo.train",
        f"experiment={preset}",
        f"seed={seed}",
        "logger=csv",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={run_dir}",
        *extra,
        *overrides,
    )


def ckpt(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"  # the end of training: no choice made on test


def evaluate_cmd(
    ckpt_path: Path, arch: str, out: Path, data: list[str], split: str = "val"
) -> list[str]:
    return py(
        "ovo.evaluate",
        f"ckpt_path={ckpt_path}",
        f"arch={arch}",
        f"split={split}",  # val: the carved validation split (the nano preset's is the test set)
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
        f"final_split={report_split(args.preset)}",
        *args.search_override,
        "wandb.enabled=false",
        f"hydra.run.dir={out}",
        *[f"++data.{d}" for d in args.data_override],
    )


def parallel(tasks: list[tuple[str, list[str], Path]], jobs: int) -> None:
    Pool(jobs, tag="repro").run([stage(name, cmd, stage_dir) for name, cmd, stage_dir in tasks])


def report_split(preset: str) -> str:
    """The split the reported numbers come from: test (the last one the preset scores)."""
    return PRESETS[preset][-1]


def panel_dir(method_dir: Path, split: str) -> Path:
    return method_dir / ("panel" if split == "val" else f"panel_{split}")


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
                    train_cmd(d / "train", seed, METHODS[m], args.train_override, args.preset),
                    d / "train",
                )
                for m, d in methods.items()
            ],
            args.jobs,
        )
        stages = []
        for m, d in methods.items():
            for split in PRESETS[args.preset]:
                stages.append(
                    (
                        f"panel {m} seed {seed} ({split})",
                        evaluate_cmd(
                            ckpt(d / "train"),
                            panel_arch,
                            panel_dir(d, split),
                            args.data_override,
                            split,
                        ),
                        panel_dir(d, split),
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
                        args.preset,
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
                        report_split(args.preset),
                    ),
                    base / "scratch" / key / "eval",
                )
                for key, arch_file in scratch.items()
            ],
            args.jobs,
        )


def arch_key(arch_file: Path) -> str:

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
            if read_done(d / "panel") is None:
                continue
            panels = {
                split: load_json(panel_dir(d, split) / "evaluation.json")["rows"]
                for split in PRESETS[args.preset]
                if read_done(panel_dir(d, split)) is not None
            }
            reported = panels.get(report_split(args.preset), panels["val"])
            per_method[m] = {
                "train_wall_s": read_done(d / "train")["wall_s"],
                "panel_wall_s": read_done(d / "panel")["wall_s"],
                # the reported split's panel (test), and every split's panel mean
                "panel": {
                    r["name"]: {k: r[k] for k in ("arch", "params", "macs", "acc1", "acc5")}
                    for r in reported
                },
                "panel_mean_acc1": statistics.fmean(r["acc1"] for r in reported),
                "panel_std_acc1": statistics.pstdev(r["acc1"] for r in reported),
                "split_panel_mean_acc1": {
                    split: statistics.fmean(r["acc1"] for r in rows)
                    for split, rows in panels.items()
                },
                "found": None,
            }
            if read_done(d / "search") is None:
                continue
            search = load_json(d / "search" / "results.json")
            key = arch_key(d / "search" / "best_arch.yaml")
            sdir = base / "scratch" / key
            scratch = None
            if read_done(sdir / "eval") is not None:
                scratch = load_json(sdir / "eval" / "evaluation.json")["rows"][0]
            best = search["best"]
            per_method[m]["search_wall_s"] = read_done(d / "search")["wall_s"]
            per_method[m]["found"] = {
                "arch": key,
                "params": best["params"],
                "macs": best["flops"],
                "search_acc1": best.get("fitness"),
                "inherited_acc1": best.get(
                    f"{report_split(args.preset)}_acc1", best.get("val_acc1")
                ),
                "scratch_acc1": scratch["acc1"] if scratch else None,
                "scratch_train_wall_s": (read_done(sdir / "train")["wall_s"] if scratch else None),
            }
        if per_method:
            seeds[str(seed)] = per_method
    if not seeds:
        raise SystemExit(f"no finished runs under {args.out}: run without --report-only first")
    return {
        "preset": args.preset,
        "splits": list(PRESETS[args.preset]),
        "reported_split": report_split(args.preset),
        "params_max": args.params_max,
        "hardware": hardware(),
        "seeds": seeds,
    }


def hardware() -> dict[str, Any]:
    """Where the report was made (the training runs ran there too)."""
    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"{platform.machine()} CPU, {os.cpu_count()} cores"
    )
    return {"device": device, "torch": torch.__version__, "python": platform.python_version()}


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test: P(a split at least this uneven | no difference); ties dropped."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(data: dict[str, Any], a: str, b: str, split: str = "val") -> dict[str, Any] | None:
    """Per seed, ``a``'s panel mean minus ``b``'s on ``split``; over seeds the mean, standard
    error and sign test. ``None`` unless both ran in at least one seed."""

    def mean(run: dict[str, Any]) -> float | None:  # reports before val splits: one split
        return run.get("split_panel_mean_acc1", {"val": run["panel_mean_acc1"]}).get(split)

    diffs = {
        seed: mean(s[a]) - mean(s[b])
        for seed, s in data["seeds"].items()
        if a in s and b in s and mean(s[a]) is not None and mean(s[b]) is not None
    }
    if not diffs:
        return None
    values = list(diffs.values())
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    wins, losses = sum(v > 0 for v in values), sum(v < 0 for v in values)
    return {
        "a": a,
        "b": b,
        "split": split,
        "per_seed": diffs,
        "mean": statistics.fmean(values),
        "se": se,
        "wins": wins,
        "losses": losses,
        "sign_test_p": sign_test_p(wins, losses),
    }


def alpha_rule(data: dict[str, Any]) -> dict[str, Any]:
    """The rule fixed in advance for ``distill.alpha``'s default: 0.5 when, at the GPU preset's
    schedule over at least 3 seeds, ``ovo_a05``'s validation panel mean beats ``ovo``'s in
    every seed or the mean paired difference exceeds two standard errors; otherwise 1.0."""
    pair = paired(data, "ovo_a05", "ovo")
    if data["preset"] != "repro_cifar10_gpu" or pair is None or len(pair["per_seed"]) < 3:
        seeds = 0 if pair is None else len(pair["per_seed"])
        return {
            "decided": False,
            "default_alpha": 1.0,
            "why": f"needs ovo and ovo_a05 at the GPU preset over >= 3 seeds (have {seeds} "
            f"seed(s) of {data['preset']})",
        }
    every = pair["wins"] == len(pair["per_seed"])
    beyond = not math.isnan(pair["se"]) and pair["mean"] > 2 * pair["se"]
    return {
        "decided": True,
        "default_alpha": 0.5 if every or beyond else 1.0,
        "why": f"alpha 0.5 won {pair['wins']} of {len(pair['per_seed'])} seeds; mean "
        f"difference {pair['mean']:+.2f} (SE {pair['se']:.2f})",
        "pair": pair,
    }


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
    hw = data.get("hardware", {})
    split_note = (
        "the test split"
        if data.get("reported_split", "val") == "test"
        else "the val split (this preset's val is the test split)"
    )
    lines = [
        f"Made with `experiment={data['preset']}` on {hw.get('device', '?')}, torch "
        f"{hw.get('torch', '?')}.",
        "",
        f"CIFAR-10 top-1 (%) on {split_note} of a fixed panel of {len(names)} subnets with "
        "inherited weights (last checkpoint); the mean over seeds where a method has several.",
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
    pairs = [p for a, b in PAIRS if (p := paired(data, a, b)) is not None]
    if pairs:
        lines += [
            "",
            "Paired by seed, on the validation split (panel mean of the first minus the "
            "second; the seed is the unit of replication):",
            "",
            "| comparison | per seed | mean | SE | wins / losses | sign test p |",
            "|---|---|---|---|---|---|",
        ]
        for p in pairs:
            per_seed = ", ".join(f"{v:+.2f}" for v in p["per_seed"].values())
            se = "n/a" if math.isnan(p["se"]) else f"{p['se']:.2f}"
            lines.append(
                f"| {p['a']} - {p['b']} | {per_seed} | {p['mean']:+.2f} | {se} | "
                f"{p['wins']} / {p['losses']} | {p['sign_test_p']:.2f} |"
            )
        rule = alpha_rule(data)
        lines += [
            "",
            f"Rule for `distill.alpha`'s default: {'decided' if rule['decided'] else 'not decided'}"
            f", alpha = {rule['default_alpha']} ({rule['why']}).",
        ]
    found = [
        (seed, m, per_method[m]["found"])
        for seed, per_method in data["seeds"].items()
        for m in methods
        if per_method.get(m, {}).get("found")
    ]
    lines += [
        "",
        f"Searched subnet (params <= {data['params_max']}; fitness = top-1 on the held-out "
        f"search split of the training images), scored on {split_note} with inherited weights "
        "and as the same arch trained from scratch (`fixed_arch`, same data and epochs):",
        "",
        "| method | seed | found arch | params (M) | MMACs | search-split top-1 | "
        "top-1 inherited | top-1 from scratch |",
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
        f"Wall time (minutes, {hw.get('device', '?')}; stages ran side by side):",
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
