"""Issue 20's screen: train each pre-registered depth-fairness variant's supernet and score it.

For every ``NAME:SEED`` it trains ``experiment=rank_cifar10_nano`` + the variant's overrides
(usage counts on), scores ``last.ckpt`` on the 22-subnet panel plus the depth x embed grid
(``ovo.evaluate``, val split), then re-reports ``ovo.rank`` on the 16 archs against the committed
two-seed standalone truth (trains nothing). Each finished step is written at once to
``<records>/<name>/seed<S>.json``, so a stopped screen resumes where it stopped (training
resumes from ``last.ckpt``).

    python bench/rank_variants.py default:0 sandwich:0            # CPU, 2 side by side
    python bench/rank_variants.py --all --seeds 0 1 --trainer gpu --parallel 16 \
        --records docs/rank_cifar10/variants_gpu

The table in the README (section "Can the search trust the supernet?") is built from these
records; the variants and the rule that picks the default were written there before training.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


class Screen:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "WANDB_MODE": "disabled"}
        self.grid = []
        args.runs_dir.mkdir(parents=True, exist_ok=True)
        for e, d in GRID:
            path = args.runs_dir / f"grid_e{e}_d{d}.yaml"
            path.write_text(f"embed_dim: {e}\ndepth: {d}\nnum_heads: 3\nmlp_ratio: 3.0\n")
            self.grid.append(path)

    def sh(self, cmd: list[str], log: Path) -> int:
        with open(log, "a") as f:
            f.write(f"\n$ {' '.join(cmd)}\n")
            f.flush()
            nice = ["nice", "-n", "10"] if self.args.nice else []
            run = subprocess.run([*nice, *cmd], stdout=f, stderr=subprocess.STDOUT, env=self.env)
            return run.returncode

    def save(self, path: Path, record: dict) -> None:
        path.write_text(json.dumps(record, indent=1) + "\n")
        if self.args.bundle is None:
            return
        with self.lock:  # one file holding every record, for machines that return few files
            bundle = sorted(self.args.records.glob("*/seed*.json"))
            data = {f"{p.parent.name}:{p.stem}": json.loads(p.read_text()) for p in bundle}
            self.args.bundle.write_text(json.dumps(data, indent=1) + "\n")

    def one(self, item: str) -> str:
        name, seed = item.split(":")
        seed, py = int(seed), sys.executable
        run = self.args.runs_dir / f"{name}-s{seed}"
        run.mkdir(parents=True, exist_ok=True)
        path = self.args.records / name / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = json.loads(path.read_text()) if path.exists() else {}
        record.setdefault("variant", name)
        record.setdefault("overrides", VARIANTS[name])
        record.setdefault("seed", seed)
        record.setdefault("recipe", RECIPE)
        record.setdefault("trainer", self.args.trainer)
        record.setdefault("threads", self.args.threads)
        ckpt, log = run / "checkpoints/last.ckpt", run / "driver.log"
        if "train_wall_s" not in record:
            if time.time() > self.args.deadline:
                return f"{item} not started (deadline)"
            cmd = [py, "-m", "ovo.train", RECIPE, *VARIANTS[name], *TRAINERS[self.args.trainer]]
            cmd += [f"seed={seed}", f"hydra.run.dir={run}", "logger=csv", "usage_counts=true"]
            cmd += self.args.override
            if ckpt.exists():
                cmd.append("ckpt_path=last")
            start = time.time()
            if self.sh(cmd, log):
                return f"{item} train failed (see {log})"
            record["train_wall_s"] = round(time.time() - start, 1)
            head = ["git", "rev-parse", "--short", "HEAD"]
            git = subprocess.run(head, cwd=REPO, capture_output=True, text=True)
            record["commit"] = git.stdout.strip() or None
            usage = json.loads((run / "usage.json").read_text())["epochs"]
            record["usage_last_epoch"] = usage[-1]
            self.save(path, record)
        if "panel" not in record:
            archs = ",".join(["min", "max", "random:20", *map(str, self.grid)])
            out = run / "panel"
            cmd = [py, "-m", "ovo.evaluate", f"ckpt_path={ckpt}", f"arch=[{archs}]", "split=val"]
            if self.sh([*cmd, f"hydra.run.dir={out}"], log):
                return f"{item} panel failed (see {log})"
            rows = json.loads((out / "evaluation.json").read_text())["rows"]
            keep = ("name", "arch", "acc1", "params")
            record["panel_rows"] = [{k: r.get(k) for k in keep} for r in rows]
            panel = [r["acc1"] for r in rows if not str(r.get("name", "")).startswith("grid_")]
            record["panel"] = {"n": len(panel), "mean_acc1": sum(panel) / len(panel)}
            self.save(path, record)
        if "ranking" not in record:
            out = run / "rank"
            cmd = [py, "-m", "ovo.rank", f"ckpt_path={ckpt}", "archs=[band:12@0.5M,stratified:4]"]
            cmd += ["standalone.seeds=[0,1]", f"standalone.results={TRUTH}", "wandb.enabled=false"]
            if self.sh([*cmd, f"hydra.run.dir={out}"], log):
                return f"{item} rank failed (see {log})"
            ranking = json.loads((out / "ranking.json").read_text())
            keep = ("name", "inherited_acc1", "standalone_acc1", "params", "group")
            record["ranking"] = {
                "summary": ranking["summary"],
                "rows": [{k: r.get(k) for k in keep} for r in ranking["rows"]],
            }
            self.save(path, record)
        return f"{item} done: panel mean {record['panel']['mean_acc1']:.2f}"


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
    p.add_argument("--budget-s", type=float, default=None, help="start no training after this")
    p.add_argument("--override", nargs="*", default=[], help="extra training overrides (smoke)")
    p.add_argument("--nice", action="store_true", help="run the jobs at nice 10")
    args = p.parse_args(argv)
    runs = list(args.runs) + [f"{n}:{s}" for s in args.seeds for n in VARIANTS if args.all]
    bad = [r for r in runs if r.count(":") != 1 or r.split(":")[0] not in VARIANTS]
    if bad or not runs:
        p.error(f"expected NAME:SEED with NAME one of {', '.join(VARIANTS)} (got {bad or 'none'})")
    args.deadline = time.time() + (args.budget_s or float("inf"))
    screen = Screen(args)
    with ThreadPoolExecutor(args.parallel) as pool:
        for line in pool.map(screen.one, runs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
