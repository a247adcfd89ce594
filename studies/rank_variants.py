"""Issue 20's screen: train each pre-registered depth-fairness variant's supernet and score it.

For every ``NAME:SEED`` it trains ``experiment=rank_cifar10_nano`` + the variant's overrides
(usage counts on), scores ``last.ckpt`` on the 22-subnet panel plus the depth x embed grid
(``ovo.evaluate``, val split), then re-reports ``ovo.rank`` on the 16 archs against the committed
two-seed standalone truth (trains nothing). The three phases run ``--parallel`` jobs at a time
through :class:`ovo.jobs.Pool` (finished jobs skipped, an interrupted training resumed from its
``last.ckpt``); a run's record, ``<records>/<name>/seed<S>.json``, is written as each of its
phases ends, so a stopped screen loses nothing it finished.

    python studies/rank_variants.py default:0 sandwich:0            # CPU, 2 side by side
    python studies/rank_variants.py --all --seeds 0 1 --trainer gpu --parallel 16 \
        --records docs/rank_cifar10/variants_gpu

    python studies/rank_variants.py --report docs/rank_cifar10/variants_gpu   # table + the rule

The table in the README (section "Can the search trust the supernet?") is built from these
records by ``--report``; the variants and the rule that picks the default (``apply_rule``) were
written there before any variant was trained.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ovo.jobs import Job, JobFailed, Pool, python_module

REPO = Path(__file__).resolve().parents[1]
TRUTH = REPO / "docs/rank_cifar10/standalone/results.json"
RECIPE = "experiment=rank_cifar10_nano"
# pre-registered in the README before any of them was trained (names are the record folders)
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "teacher_full_depth": ["distill.teacher_depth=max"],
    "student_depth_linear": ["distill.student_depth=linear"],
    "layer_lr_inverse_usage": ["optimizer.layer_lr_scale=inverse_usage"],
    "per_depth_norm": ["model.per_depth_norm=true"],
    "sandwich": ["distill=sandwich"],
    "max": ["distill=max"],
    "full_depth_linear": ["distill.teacher_depth=max", "distill.student_depth=linear"],
}
# the depth x embed grid: uniform subnets of the nano space (3 heads, MLP ratio 3)
GRID = [(e, d) for e in (64, 96, 128) for d in (4, 5, 6)]
TRAINERS = {"cpu": [], "gpu": ["trainer=gpu", "trainer.precision=32-true"]}


def grid_files(folder: Path) -> list[Path]:
    """The grid's archs as YAML files ``ovo.evaluate`` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for e, d in GRID:
        path = folder / f"grid_e{e}_d{d}.yaml"
        path.write_text(f"embed_dim: {e}\ndepth: {d}\nnum_heads: 3\nmlp_ratio: 3.0\n")
        paths.append(path)
    return paths


class Screen:
    """The screen's runs in three phases (train, panel, rank), each a :class:`ovo.jobs.Pool` of
    jobs; a run's record is written as each of its phases ends. A failed job is reported and
    its run left out of the later phases; the others go on."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.grid = grid_files(args.runs_dir)
        self.pool = Pool(args.parallel, args.threads, tag="rank_variants")
        self.prefix = ("nice", "-n", "10") if args.nice else ()

    def job(self, name: str, run: Path, module: str, *args: str) -> Job:
        train = module == "ovo.train"
        return Job(
            name,
            (*self.prefix, *python_module(module, *args, f"hydra.run.dir={run}")),
            run,
            log_name="driver.log",
            resume_file="checkpoints/last.ckpt" if train else None,
            resume_args=("ckpt_path=last",),
            env={"WANDB_MODE": "disabled"},
        )

    def record(self, item: str) -> tuple[Path, dict[str, Any]]:
        name, seed = item.split(":")
        path = self.args.records / name / f"seed{seed}.json"
        record = json.loads(path.read_text()) if path.exists() else {}
        for key, value in (
            ("variant", name),
            ("overrides", VARIANTS[name]),
            ("seed", int(seed)),
            ("recipe", RECIPE),
            ("trainer", self.args.trainer),
            ("threads", self.args.threads),
        ):
            record.setdefault(key, value)
        return path, record

    def save(self, path: Path, record: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")
        if self.args.bundle is not None:  # every record in one file, for machines that return few
            found = sorted(self.args.records.glob("*/seed*.json"))
            data = {f"{p.parent.name}:{p.stem}": json.loads(p.read_text()) for p in found}
            self.args.bundle.write_text(json.dumps(data, indent=1) + "\n")

    def phase(
        self,
        key: str,
        items: list[str],
        make: Callable[[str, Path], Job],
        read: Callable[[Job], dict[str, Any]],
    ) -> None:
        """Run ``make(item, run_dir)``'s job for every item whose record lacks ``key``, then
        store ``read(job)`` under the record of each job that finished."""
        todo = {}
        for item in items:
            if key not in self.record(item)[1]:
                name, seed = item.split(":")
                todo[item] = make(item, self.args.runs_dir / f"{name}-s{seed}")
        try:
            self.pool.run(list(todo.values()))
        except JobFailed as err:  # the others ran to the end: keep what they made
            print(f"rank_variants: {err}", file=sys.stderr, flush=True)
        for item, job in todo.items():
            if job.done() is not None:
                path, record = self.record(item)
                record.update(read(job))
                self.save(path, record)

    def run(self, items: list[str]) -> None:
        trainer = TRAINERS[self.args.trainer]

        def train(item: str, run: Path) -> Job:
            name, seed = item.split(":")
            args = [RECIPE, *VARIANTS[name], *trainer, f"seed={seed}", "logger=csv"]
            return self.job(item, run, "ovo.train", *args, "usage_counts=true", *self.args.override)

        def trained(job: Job) -> dict[str, Any]:
            git = ["git", "rev-parse", "--short", "HEAD"]
            commit = subprocess.run(git, cwd=REPO, capture_output=True, text=True).stdout.strip()
            usage = json.loads((job.run_dir / "usage.json").read_text())["epochs"]
            return {
                "train_wall_s": job.done()["wall_s"],
                "commit": commit or None,
                "usage_last_epoch": usage[-1],
            }

        def panel(item: str, run: Path) -> Job:
            archs = ",".join(["min", "max", "random:20", *map(str, self.grid)])
            ckpt = run / "checkpoints/last.ckpt"
            args = [f"ckpt_path={ckpt}", f"arch=[{archs}]", "split=val"]
            return self.job(f"{item} panel", run / "panel", "ovo.evaluate", *args)

        def scored(job: Job) -> dict[str, Any]:
            rows = json.loads((job.run_dir / "evaluation.json").read_text())["rows"]
            keep = ("name", "arch", "acc1", "params")
            panel = [r["acc1"] for r in rows if not str(r.get("name", "")).startswith("grid_")]
            return {
                "panel_rows": [{k: r.get(k) for k in keep} for r in rows],
                "panel": {"n": len(panel), "mean_acc1": sum(panel) / len(panel)},
            }

        def rank(item: str, run: Path) -> Job:
            ckpt = run / "checkpoints/last.ckpt"
            args = [f"ckpt_path={ckpt}", "archs=[band:12@0.5M,stratified:4]"]
            args += ["standalone.seeds=[0,1]", f"standalone.results={TRUTH}"]
            return self.job(f"{item} rank", run / "rank", "ovo.rank", *args, "wandb.enabled=false")

        def ranked(job: Job) -> dict[str, Any]:
            ranking = json.loads((job.run_dir / "ranking.json").read_text())
            keep = ("name", "inherited_acc1", "standalone_acc1", "params", "group")
            rows = [{k: r.get(k) for k in keep} for r in ranking["rows"]]
            return {"ranking": {"summary": ranking["summary"], "rows": rows}}

        self.phase("train_wall_s", items, train, trained)
        ready = [i for i in items if "train_wall_s" in self.record(i)[1]]
        self.phase("panel", ready, panel, scored)
        self.phase("ranking", ready, rank, ranked)
        for item in items:
            record = self.record(item)[1]
            done = "ranking" in record
            mean = f"panel mean {record['panel']['mean_acc1']:.2f}" if "panel" in record else ""
            print(f"{item}: {'done' if done else 'not finished'} {mean}".rstrip(), flush=True)


# ---- report: the variants table and the pre-registered rule ---------------------------------
PANEL_TOLERANCE = 1.0  # eligible: panel mean at most this far below the default's (seed 0)
MIN_GAIN = 0.2  # new default: mean in-band tau above the default's by more than this


def score(record: dict) -> dict:
    """One record's scores against the two-seed truth (what the README's table shows)."""
    summary = record["ranking"]["summary"]
    band, strat = summary["by_group"]["band"], summary["by_group"]["strat"]
    depth = {}
    for r in json.loads(TRUTH.read_text()):
        depth[r["name"]] = r["arch"]["depth"]
    inherited = {r["name"]: r["inherited_acc1"] for r in record["ranking"]["rows"]}
    in_band = [n for n, r in zip(inherited, record["ranking"]["rows"]) if r["group"] == "band"]
    deep = [inherited[n] for n in in_band if depth[n] == max(depth[m] for m in in_band)]
    wide = [inherited[n] for n in in_band if depth[n] == min(depth[m] for m in in_band)]
    return {
        "variant": record["variant"],
        "seed": record["seed"],
        "trainer": record.get("trainer", "cpu"),
        "panel": record["panel"]["mean_acc1"],
        "band_tau": band["kendall_tau"],
        "band_ci": band["kendall_tau_ci95"],
        "overall_tau": summary["inherited_vs_standalone"]["kendall_tau"],
        "overall_ci": summary["inherited_vs_standalone"]["kendall_tau_ci95"],
        "strat_tau": strat["kendall_tau"],
        "family_gap": statistics.mean(deep) - statistics.mean(wide),
        "train_min": (record["train_wall_s"] - record.get("paused_s", 0)) / 60,
    }


def apply_rule(scores: list[dict]) -> tuple[str | None, list[str]]:
    """The README's pre-registered rule on one screen (seed 0 screen, seed 1 second seeds).

    Returns the new default's name (None: the default stays) and the reasoning, line by line.
    """
    by = {(s["variant"], s["seed"]): s for s in scores}
    base = by[("default", 0)]["panel"]
    lines = [f"screen (seed 0): default panel {base:.2f}; eligible within {PANEL_TOLERANCE} point"]
    seed0 = [s for s in scores if s["seed"] == 0 and s["variant"] != "default"]
    eligible = [s for s in seed0 if s["panel"] >= base - PANEL_TOLERANCE]
    for s in sorted(seed0, key=lambda s: -s["band_tau"]):
        ok = "eligible" if s in eligible else "not eligible"
        lines.append(
            f"  {s['variant']}: panel {s['panel']:.2f}, in-band tau {s['band_tau']:+.2f}: {ok}"
        )
    # tie-breaker: overall tau (then fewer passes per step, which no tie here has needed)
    best = sorted(eligible, key=lambda s: (-s["band_tau"], -s["overall_tau"]))[:2]
    lines.append("second seed for: default, " + ", ".join(s["variant"] for s in best))

    def mean_tau(name: str) -> float | None:
        runs = [by.get((name, seed)) for seed in (0, 1)]
        return None if None in runs else statistics.mean(r["band_tau"] for r in runs)

    default_mean = mean_tau("default")
    if default_mean is None:
        return None, [*lines, "the default's second seed is missing: the rule cannot be applied"]
    lines.append(f"default: mean in-band tau {default_mean:+.2f}")
    winner = None
    for s in sorted(best, key=lambda s: -(mean_tau(s["variant"]) or -9)):
        mean = mean_tau(s["variant"])
        if mean is None:
            lines.append(f"  {s['variant']}: second seed missing")
            continue
        overall = [by[(s["variant"], seed)]["overall_tau"] for seed in (0, 1)]
        gain_ok, overall_ok = mean - default_mean > MIN_GAIN, min(overall) > 0
        lines.append(
            f"  {s['variant']}: mean in-band tau {mean:+.2f} (gain {mean - default_mean:+.2f}, "
            f"needs > {MIN_GAIN}: {'yes' if gain_ok else 'no'}); overall tau "
            f"{overall[0]:+.2f} / {overall[1]:+.2f} (needs > 0 in both: "
            f"{'yes' if overall_ok else 'no'})"
        )
        if winner is None and gain_ok and overall_ok:
            winner = s["variant"]
    lines.append(f"new default: {winner}" if winner else "the default stays as it is")
    return winner, lines


def report(folder: Path) -> None:
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*/seed*.json"))]
    scores = [score(r) for r in records if "ranking" in r]
    order = {name: i for i, name in enumerate(VARIANTS)}
    scores.sort(key=lambda s: (order[s["variant"]], s["seed"]))
    for s in scores:
        band, overall = s["band_ci"], s["overall_ci"]
        print(
            f"| `{s['variant']}` | {s['seed']} | {s['trainer']} | {s['panel']:.2f} | "
            f"{s['band_tau']:+.2f} ({band[0]:+.2f}, {band[1]:+.2f}) | "
            f"{s['overall_tau']:+.2f} ({overall[0]:+.2f}, {overall[1]:+.2f}) | "
            f"{s['strat_tau']:+.2f} | {s['family_gap']:+.2f} | {s['train_min']:.1f} |"
        )
    print()
    for name in VARIANTS:
        mine = [s for s in scores if s["variant"] == name]
        if len(mine) > 1:
            keys = ("panel", "band_tau", "overall_tau", "family_gap")
            means = {k: statistics.mean(s[k] for s in mine) for k in keys}
            print(
                f"| `{name}` | {len(mine)} | {means['panel']:.2f} | {means['band_tau']:+.2f} | "
                f"{means['overall_tau']:+.2f} | {means['family_gap']:+.2f} |"
            )
    print()
    print("\n".join(apply_rule(scores)[1]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="*", help="NAME:SEED, NAME one of: " + ", ".join(VARIANTS))
    p.add_argument("--all", action="store_true", help="every variant, at each of --seeds")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--trainer", choices=sorted(TRAINERS), default="cpu")
    p.add_argument("--parallel", type=int, default=2, help="runs side by side")
    p.add_argument("--threads", type=int, default=1, help="OMP threads per run")
    p.add_argument("--records", type=Path, default=REPO / "docs/rank_cifar10/variants")
    p.add_argument("--runs-dir", type=Path, default=REPO / "outputs/rank_variants")
    p.add_argument("--bundle", type=Path, default=None, help="also keep every record in one file")
    p.add_argument("--override", nargs="*", default=[], help="extra training overrides (smoke)")
    p.add_argument("--nice", action="store_true", help="run the jobs at nice 10")
    p.add_argument("--report", type=Path, default=None, help="a records folder: table + rule")
    args = p.parse_args(argv)
    if args.report is not None:
        return report(args.report)
    runs = list(args.runs) + [f"{n}:{s}" for s in args.seeds for n in VARIANTS if args.all]
    bad = [r for r in runs if r.count(":") != 1 or r.split(":")[0] not in VARIANTS]
    if bad or not runs:
        p.error(f"expected NAME:SEED with NAME one of {', '.join(VARIANTS)} (got {bad or 'none'})")
    Screen(args).run(runs)


if __name__ == "__main__":
    main()
