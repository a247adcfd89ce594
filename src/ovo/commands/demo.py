"""``python -m ovo.demo [--out DIR]``: train -> search -> evaluate -> export -> family, end to end.

Unlike the other commands it has no config of its own (argparse flags): it runs theirs.

Each stage is the public command run in a subprocess, exactly as a user would type it (the
command line is printed before it runs and its output streams through), into fixed directories
under ``--out`` that the notebooks read::

    <out>/train/checkpoints/last.ckpt     python -m ovo.train experiment=quickstart
    <out>/search/demo/results.json        python -m ovo.search (+ best_arch.yaml, pareto.png)
    <out>/evaluate/evaluation.csv         python -m ovo.evaluate (min, max, best arch)
    <out>/model/                          python -m ovo.export (timm folder, card, pt2, ONNX)
    <out>/family/                         python -m ovo.export family=... (three front members,
                                          family.json, elastic/ with slices.csv)

The search is ``strategy=nsga2`` over ``objectives=[acc,params]``: its front (``front.json``,
``front.csv``, ``front.png``) is what the family stage ships.

Measured with the defaults (30 epochs; search: 20 archs x 5 generations) on 2 CPU cores shared
with other jobs, one torch thread (``OMP_NUM_THREADS=1``): 3.8 min in all (train 194 s, search
17 s, evaluate 8 s, export 5 s). With 2 threads on the same busy cores training took 28 min:
OpenMP threads spin-wait when the cores are not theirs, so set ``OMP_NUM_THREADS=1`` there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ovo.checkpoint import load_supernet
from ovo.commands.cli import print_outputs
from ovo.jobs import hydra_value, launch, python_module

DEMO_NAME = "demo"  # the search's run name: <out>/search/demo
STAGE_DIRS = (
    "train",
    f"search/{DEMO_NAME}",
    "evaluate",
    "export",
    "model",
    "family",
    "export-family",
)
FAMILY_SIZE = 3  # members the family stage ships: the cheapest, a middle one, the most accurate


class StageFailed(RuntimeError):
    def __init__(self, stage: str, returncode: int) -> None:
        super().__init__(f"stage '{stage}' failed with exit status {returncode}")
        self.stage = stage
        self.returncode = returncode


@dataclass
class Layout:
    """Where each stage writes under ``--out`` (fixed, so the notebooks can find them)."""

    out: Path
    train: Path = field(init=False)
    search: Path = field(init=False)
    evaluate: Path = field(init=False)
    export: Path = field(init=False)
    model: Path = field(init=False)

    def __post_init__(self) -> None:
        self.train = self.out / "train"
        self.search = self.out / "search" / DEMO_NAME
        self.evaluate = self.out / "evaluate"
        self.export = self.out / "export"
        self.model = self.out / "model"

    @property
    def checkpoint(self) -> Path:
        return self.train / "checkpoints" / "last.ckpt"

    @property
    def best_arch(self) -> Path:
        return self.search / "best_arch.yaml"


def find_demo(out: str | Path | None = None) -> Layout:
    """A finished demo's outputs: ``out``, else ``$OVO_DEMO_DIR``, else ``outputs/demo`` seen from
    the repository root or from ``notebooks/`` (where Jupyter starts the notebooks)."""
    given = out or os.environ.get("OVO_DEMO_DIR")
    candidates = [Path(given)] if given else [Path("outputs/demo"), Path("../outputs/demo")]
    for candidate in candidates:
        layout = Layout(candidate)
        if (layout.search / "results.json").is_file() and layout.checkpoint.is_file():
            return layout
    raise FileNotFoundError(
        f"no finished demo in {' or '.join(str(c) for c in candidates)}: run `make demo` "
        "(python -m ovo.demo) first, or point OVO_DEMO_DIR at its --out directory"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ovo.demo",
        description="Train the quickstart supernet, search it under a params budget, evaluate "
        "the best subnet with inherited weights and export it (timm folder + card, pt2, ONNX).",
    )
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="default: %(default)s")
    p.add_argument("--epochs", type=int, help="training epochs (default: the quickstart's, 30)")
    p.add_argument(
        "--params-max",
        help="search budget, a number or e.g. '0.3M' (default: halfway between the params of "
        "the smallest and the largest subnet of the trained supernet)",
    )
    p.add_argument("--population", type=int, default=20, help="default: %(default)s")
    p.add_argument("--generations", type=int, default=5, help="default: %(default)s")
    p.add_argument("--parents", type=int, default=5, help="default: %(default)s")
    p.add_argument("--mutations", type=int, default=7, help="default: %(default)s")
    p.add_argument("--crossovers", type=int, default=7, help="default: %(default)s")
    p.add_argument(
        "--logger",
        default="wandb",
        choices=("wandb", "csv", "tensorboard", "none"),
        help="training logger (default: %(default)s, offline); anything but wandb also turns "
        "off the search's W&B run",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs of an earlier demo in --out (otherwise refused)",
    )
    return p.parse_args(argv)


def run_stage(stage: str, module: str, args: list[str], times: dict[str, float]) -> None:
    """``python -m <module> <args>``, output streamed; raises :class:`StageFailed`."""
    shown = shlex.join(["python", "-m", module, *args])
    print(f"\n=== {stage} ===\n$ {shown}\n", flush=True)
    # streamed (no log file); W&B offline unless the user chose otherwise, as `make` does
    returncode, times[stage] = launch(python_module(module, *args))
    if returncode != 0:
        raise StageFailed(stage, returncode)


def default_params_max(ckpt: Path) -> int:
    """Halfway between the smallest and the largest subnet's params, on the trained model."""
    net = load_supernet(ckpt).net
    return (net.num_params(net.space.min_arch) + net.num_params(net.space.max_arch)) // 2


def run_demo(args: argparse.Namespace) -> dict[str, float]:
    """Run the four stages; returns the wall time of each and the total (seconds)."""
    paths = Layout(args.out)
    existing = [d for d in STAGE_DIRS if (args.out / d).exists()]
    if existing and not args.overwrite:
        raise SystemExit(
            f"ovo: error: {args.out} already holds a demo's outputs ({', '.join(existing)}); "
            "pass --overwrite to replace them (make demo ARGS=--overwrite) or choose --out"
        )
    for d in existing:  # only the demo's own stage dirs, never the whole --out
        shutil.rmtree(args.out / d)

    start = time.perf_counter()
    times: dict[str, float] = {}
    train = ["experiment=quickstart", f"hydra.run.dir={hydra_value(paths.train)}"]
    if args.epochs is not None:
        train.append(f"trainer.max_epochs={args.epochs}")
    if args.logger != "wandb":
        train.append(f"logger={args.logger}")
    run_stage("train", "ovo.train", train, times)
    if not paths.checkpoint.is_file():
        raise SystemExit(f"ovo: error: training wrote no {paths.checkpoint}")

    ckpt = hydra_value(paths.checkpoint)
    budget = args.params_max or str(default_params_max(paths.checkpoint))
    search = [
        f"ckpt_path={ckpt}",
        f"paths.log_dir={hydra_value(args.out)}",
        f"name={DEMO_NAME}",
        f"constraints.params_max={hydra_value(budget)}",
        f"population={args.population}",
        f"generations={args.generations}",
        f"parents={args.parents}",
        f"mutations={args.mutations}",
        f"crossovers={args.crossovers}",
        "strategy=nsga2",
        "objectives=[acc,params]",
    ]
    if args.logger != "wandb":
        search.append("wandb.enabled=false")
    run_stage("search", "ovo.search", search, times)

    archs = f"[min,max,{hydra_value(paths.best_arch)}]"
    evaluate = [
        f"ckpt_path={ckpt}",
        f"arch={archs}",
        f"hydra.run.dir={hydra_value(paths.evaluate)}",
    ]
    run_stage("evaluate", "ovo.evaluate", evaluate, times)

    # timm's Hub folder + model card (numbers from the search's results.json), torch.export, and
    # ONNX through the dynamo exporter when onnx/onnxscript are installed (dev group / onnx extra)
    onnx = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))
    export = [
        f"ckpt_path={ckpt}",
        f"arch={hydra_value(paths.best_arch)}",
        f"out_dir={hydra_value(paths.model)}",
        f"hydra.run.dir={hydra_value(paths.export)}",
        f"search_result={hydra_value(paths.search / 'results.json')}",
        "format=[safetensors,pt2" + (",onnx]" if onnx else "]"),
    ]
    run_stage("export", "ovo.export", export, times)

    family = [
        f"ckpt_path={ckpt}",
        f"family={hydra_value(paths.search)}",
        f"family.budgets={family_budgets(paths.search)}",
        "elastic=true",
        f"out_dir={hydra_value(args.out / 'family')}",
        f"hydra.run.dir={hydra_value(args.out / 'export-family')}",
    ]
    run_stage("family", "ovo.export", family, times)
    times["total"] = time.perf_counter() - start  # stages + loading the checkpoint for the budget
    print_summary(paths, times)
    return times


def family_budgets(search: Path, size: int = FAMILY_SIZE) -> str:
    """``family.budgets`` that pick ``size`` members spread over the front (by params): on a
    front, the most accurate member within ``params <= p`` of a member is that member."""
    members = json.loads((search / "front.json").read_text())["members"]
    params = sorted(m["params"] for m in members)
    if len(params) > size:
        params = [params[round(i * (len(params) - 1) / (size - 1))] for i in range(size)]
    return "[" + ",".join(f"params:{p}" for p in params) + "]"


def print_summary(paths: Layout, times: dict[str, float]) -> None:
    results = json.loads((paths.search / "results.json").read_text())
    best = results["best"]
    split = results.get("final_split", "val")
    budget = results["constraints"].get("params_max")
    lines = [
        f"best subnet: {best['params'] / 1e6:.3f}M params"
        + (f" (budget {budget / 1e6:.3f}M)" if budget else "")
        + f", {best['flops'] / 1e6:.1f}M MACs, "
        f"{split} top-1 {best.get(f'{split}_acc1', float('nan')):.2f}%",
        "wall time: " + ", ".join(f"{stage} {secs:.0f}s" for stage, secs in times.items()),
    ]
    outputs = {
        "checkpoint": paths.checkpoint,
        "search results": paths.search / "results.json",
        "best arch": paths.best_arch,
        "Pareto plot": paths.search / "pareto.png",
        "evaluation table": paths.evaluate / "evaluation.csv",
        "exported model": paths.model,
        "model card": paths.model / "README.md",
        "family": paths.out / "family" / "family.json",
        "notebooks": "notebooks/01_subnet_grid.ipynb, notebooks/02_search_results.ipynb"
        + ("" if paths.out == Path("outputs/demo") else f" (OVO_DEMO_DIR={paths.out})"),
    }
    print_outputs("ovo demo finished", outputs, lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run_demo(args)
    except StageFailed as err:
        print(f"ovo: error: {err}; see its output above", file=sys.stderr, flush=True)
        return err.returncode if err.returncode > 0 else 1
    except KeyboardInterrupt:  # the running stage got the Ctrl-C too and has stopped
        print("ovo: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0
