"""``python -m ovo.rank ckpt_path=... archs=[band:12@0.5M,stratified:6]``: does the supernet rank
subnets the way training them alone does, and how far are inherited weights from retrained ones?

For every arch: its accuracy with inherited weights; its accuracy trained alone with the
checkpoint's own recipe (``python -m ovo.train fixed_arch=...`` with the recorded training config:
data, augmentation, schedule, epochs, global batch), one run per ``standalone.seeds``; and with
``finetune.epochs`` > 0, after a short finetune from its inherited weights (``init_from``). Every
accuracy is measured on the same ``split``.

Outputs in the run directory (``outputs/rank/<name>``): ``recipe.yaml`` (the training config the
standalone runs use), ``archs/<arch>.yaml``, one training run directory per arch and seed
(``standalone/<arch>/seed<k>/``, ``finetune/<arch>/``), ``ranking.json`` (every number and arch),
``ranking.png`` (inherited vs standalone accuracy, points sized by params) and a W&B table.
Running the command again skips every finished training (``done.json``) and resumes an
interrupted one from its ``last.ckpt``.
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig

from ovo import ranking
from ovo.archspec import parse_arch_spec
from ovo.atomic import atomic_write_json, atomic_write_text
from ovo.checkpoint import LoadedSupernet, load_supernet
from ovo.commands.base import (
    eval_fabric,
    hydra_command,
    hydra_value,
    open_checkpoint,
    open_wandb,
    output_dir,
    print_outputs,
)
from ovo.commands.evaluate import EVAL_SPLITS
from ovo.errors import ConfigError, UserError
from ovo.evaluation import EvalSettings, SubnetEvaluator
from ovo.settings import plain
from ovo.space import Arch

RUN_DIR_PLACEHOLDER = "${hydra:runtime.output_dir}"


@dataclass(frozen=True)
class Training:
    """One training run ``ovo.rank`` launches: a standalone arch (one seed) or a finetune."""

    kind: str  # "standalone" | "finetune"
    name: str  # the arch's name
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]

    @property
    def done_file(self) -> Path:
        return self.run_dir / "done.json"

    @property
    def last_ckpt(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    def identity(self, checkpoint: Path, arch: Arch) -> dict[str, Any]:
        """What this training is: a run directory holding another one is not reused."""
        return {
            "checkpoint": str(checkpoint),
            "arch": arch.to_dict(),
            "overrides": list(self.overrides),
        }


class TrainingFailed(UserError):
    """A standalone or finetune training exited non-zero (its log says why)."""


def check_settings(cfg: DictConfig) -> None:
    if cfg.jobs < 1:
        raise ConfigError(f"jobs={cfg.jobs} must be at least 1")
    if cfg.split not in EVAL_SPLITS:
        raise ConfigError(f"split={cfg.split}: use val, test or search")
    if not cfg.standalone.seeds:
        raise ConfigError("standalone.seeds is empty: give at least one training seed")
    if cfg.finetune.epochs < 0 or cfg.finetune.lr_scale <= 0:
        raise ConfigError("finetune.epochs must be >= 0 and finetune.lr_scale > 0")
    for key in ("top_k", "bins", "bootstrap"):
        if cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]} must be at least 1")
    if cfg.threads_per_job is not None and cfg.threads_per_job < 1:
        raise ConfigError(f"threads_per_job={cfg.threads_per_job} must be at least 1 or null")
    if str(cfg.eval.devices) not in ("1", "auto") or cfg.eval.num_nodes != 1:
        raise ConfigError(
            "ovo.rank scores on one device (eval.devices=1); its trainings run side by side "
            "with jobs=N, one per GPU when there are several"
        )


def recipe_overrides(recipe: dict[str, Any]) -> list[str]:
    """Overrides that keep the recipe's global batch on one device: the recorded run's devices
    become gradient accumulation steps, so LR scaling and steps per epoch stay as they were."""
    rec = recipe["recipe"]
    steps = int(rec["world_size"]) * int(rec["accumulate_grad_batches"])
    if steps == 1:
        return []
    return [
        "trainer.devices=1",
        "trainer.num_nodes=1",
        "trainer.strategy=auto",
        f"trainer.accumulate_grad_batches={steps}",
    ]


def plan(
    cfg: DictConfig, loaded: LoadedSupernet, archs: dict[str, Arch], out: Path
) -> list[Training]:
    """Every training the command needs, standalone first (in arch order), then finetunes."""
    same_batch = recipe_overrides(loaded.record)
    base = ["distill.teacher=none", "distill.subnets_per_step=1", *same_batch]
    jobs = []
    for name in archs:
        arch_file = out / "archs" / f"{name}.yaml"
        for seed in cfg.standalone.seeds:
            overrides = [*base, f"fixed_arch={hydra_value(arch_file)}", f"seed={int(seed)}"]
            overrides += list(cfg.standalone.overrides)
            run_dir = out / "standalone" / name / f"seed{int(seed)}"
            jobs.append(Training("standalone", name, int(seed), run_dir, tuple(overrides)))
    if cfg.finetune.epochs > 0:
        lr = float(loaded.record["config"]["optimizer"]["lr"]) * float(cfg.finetune.lr_scale)
        for name in archs:
            overrides = [
                *base,
                f"fixed_arch={hydra_value(out / 'archs' / f'{name}.yaml')}",
                f"init_from={hydra_value(Path(cfg.ckpt_path).resolve())}",
                f"trainer.max_epochs={int(cfg.finetune.epochs)}",
                "scheduler.warmup_epochs=0",
                f"optimizer.lr={lr}",
                *cfg.finetune.overrides,
            ]
            jobs.append(Training("finetune", name, 0, out / "finetune" / name, tuple(overrides)))
    return jobs


class Runner:
    """Runs trainings ``jobs`` at a time (one thread each, a subprocess per training) and scores
    each finished one on the split; GPUs are handed out round-robin, CPU threads split evenly."""

    def __init__(
        self,
        cfg: DictConfig,
        out: Path,
        evaluator: SubnetEvaluator,
        archs: dict[str, Arch],
    ) -> None:
        self.out, self.evaluator, self.archs = out, evaluator, archs
        self.checkpoint = Path(cfg.ckpt_path).resolve()
        self.jobs = int(cfg.jobs)
        cores = os.cpu_count() or 1
        self.threads = int(cfg.threads_per_job or max(1, cores // self.jobs))
        # the GPUs this process may use, as the parent's CUDA_VISIBLE_DEVICES names them
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        count = torch.cuda.device_count()
        self.gpus = visible.split(",")[:count] if visible else [str(i) for i in range(count)]
        self.slots: queue.Queue[int] = queue.Queue()
        for slot in range(self.jobs):
            self.slots.put(slot)
        self.score_lock = threading.Lock()

    def command(self, job: Training) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "ovo.train",
            "--config-dir",
            str(self.out),
            "--config-name",
            "recipe",
            f"hydra.run.dir={hydra_value(job.run_dir)}",
            *job.overrides,
        ]
        if job.last_ckpt.is_file():  # interrupted: resume it
            args.append("ckpt_path=last")
        return args

    def check_identity(self, job: Training) -> None:
        """Refuse a run directory that holds a training of another arch/checkpoint/recipe (the
        same ``name=`` reused with other settings)."""
        want = job.identity(self.checkpoint, self.archs[job.name])
        for record in (job.run_dir / "job.json", job.done_file):
            if record.is_file():
                have = json.loads(record.read_text())
                # a key the record lacks (written by an older ovo.rank) cannot be checked
                changed = ", ".join(k for k in want if k in have and have[k] != want[k])
                if changed:
                    raise ConfigError(
                        f"{job.run_dir} holds a {job.kind} training with another {changed}: this "
                        "run directory belongs to another ranking; pass another name= (or delete "
                        "it to start over)"
                    )
        job.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(job.run_dir / "job.json", want)

    def run(self, job: Training) -> dict[str, Any]:
        self.check_identity(job)
        if job.done_file.is_file():
            return json.loads(job.done_file.read_text())
        slot = self.slots.get()
        try:
            env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
            env.setdefault("WANDB_MODE", "offline")
            if self.gpus:
                env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
            job.run_dir.mkdir(parents=True, exist_ok=True)
            cmd = self.command(job)
            resumed = "ckpt_path=last" in cmd
            print(f"[rank] {job.kind} {job.name} seed {job.seed}: start", flush=True)
            start = time.perf_counter()
            with (job.run_dir / "train.log").open("a") as log:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
            seconds = time.perf_counter() - start
        finally:
            self.slots.put(slot)
        if rc != 0:
            tail = (job.run_dir / "train.log").read_text().strip().splitlines()[-1:]
            raise TrainingFailed(
                f"{job.kind} training of {job.name} (seed {job.seed}) failed with exit status "
                f"{rc}: {' '.join(tail)[:300]}; its log is {job.run_dir / 'train.log'}; fix it "
                "and run the same command again (finished trainings are kept)"
            )
        with self.score_lock:
            trained = load_supernet(job.last_ckpt)
            arch = Arch.from_dict(trained.hparams["fixed_arch"])
            self.evaluator.net.load_state_dict(trained.net.state_dict())
            score = self.evaluator.evaluate([arch])[0]
        record = {
            **job.identity(self.checkpoint, self.archs[job.name]),
            "kind": job.kind,
            "name": job.name,
            "seed": job.seed,
            "acc1": 100 * score.acc1,
            "acc5": 100 * score.acc5,
            "images": score.num_images,
            "wall_s": round(seconds, 1),
            "resumed": resumed,
            "threads": self.threads,
            "command": cmd,
        }
        atomic_write_json(job.done_file, record)
        print(
            f"[rank] {job.kind} {job.name} seed {job.seed}: {record['acc1']:.2f}% in "
            f"{seconds / 60:.1f} min",
            flush=True,
        )
        return record

    def run_all(self, jobs: list[Training]) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = [pool.submit(self.run, job) for job in jobs]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise


def report(
    cfg: DictConfig,
    loaded: LoadedSupernet,
    archs: dict[str, Arch],
    inherited: dict[str, float],
    trained: list[dict[str, Any]],
) -> dict[str, Any]:
    """Rows per arch and the agreement statistics (see :mod:`ovo.ranking`)."""
    net = loaded.net
    names = list(archs)
    by = {(r["kind"], r["name"], r["seed"]): r for r in trained}
    seeds = [int(s) for s in cfg.standalone.seeds]
    rows = []
    for name in names:
        arch = archs[name]
        per_seed = [by[("standalone", name, s)]["acc1"] for s in seeds]
        row = {
            "name": name,
            "arch": arch.short(),
            "params": net.num_params(arch),
            "macs": net.num_macs(arch),
            "inherited_acc1": inherited[name],
            "standalone_acc1": statistics.fmean(per_seed),
            "standalone_acc1_per_seed": per_seed,
            "standalone_wall_s": [by[("standalone", name, s)]["wall_s"] for s in seeds],
            "gap": statistics.fmean(per_seed) - inherited[name],
            "arch_config": arch.to_dict(),
        }
        if ("finetune", name, 0) in by:
            tuned = by[("finetune", name, 0)]
            row["finetuned_acc1"] = tuned["acc1"]
            row["finetune_gain"] = tuned["acc1"] - inherited[name]
            row["finetune_wall_s"] = tuned["wall_s"]
        rows.append(row)
    sizes = [r["params"] for r in rows]
    inh = [r["inherited_acc1"] for r in rows]
    std = [r["standalone_acc1"] for r in rows]
    stats = dict(
        bins=int(cfg.bins), top_k=int(cfg.top_k), resamples=int(cfg.bootstrap), seed=int(cfg.seed)
    )
    summary: dict[str, Any] = {
        "inherited_vs_standalone": ranking.summarize(sizes, inh, std, **stats)
    }
    groups = {}
    for prefix in ("band", "strat"):
        members = [i for i, r in enumerate(rows) if r["name"].startswith(prefix)]
        if len(members) >= 2:
            groups[prefix] = ranking.summarize(
                [sizes[i] for i in members],
                [inh[i] for i in members],
                [std[i] for i in members],
                **stats,
            )
    summary["by_group"] = groups
    if len(seeds) >= 2:  # how well one standalone seed ranks against another: the ceiling
        first = [r["standalone_acc1_per_seed"][0] for r in rows]
        second = [r["standalone_acc1_per_seed"][1] for r in rows]
        summary["noise_ceiling"] = {
            "kendall_tau_seed0_vs_seed1": ranking.kendall_tau_b(first, second),
            "kendall_tau_ci95": ranking.bootstrap_ci(
                first, second, ranking.kendall_tau_b, int(cfg.bootstrap), seed=int(cfg.seed)
            ),
            "mean_abs_seed_difference": statistics.fmean(abs(a - b) for a, b in zip(first, second)),
        }
    if all("finetuned_acc1" in r for r in rows):
        tuned = [r["finetuned_acc1"] for r in rows]
        summary["finetuned_vs_standalone"] = ranking.summarize(sizes, tuned, std, **stats)
        summary["finetune"] = {
            "epochs": int(cfg.finetune.epochs),
            "gain_mean": statistics.fmean(r["finetune_gain"] for r in rows),
            "remaining_gap_mean": statistics.fmean(s - t for s, t in zip(std, tuned)),
        }
    walls = [w for r in rows for w in r["standalone_wall_s"]]
    summary["standalone_wall_s_mean"] = statistics.fmean(walls)
    return {"rows": rows, "summary": summary}


def plot_ranking(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Inherited (x) vs standalone (y) accuracy, points sized by params; finetuned archs too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ovo.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 5.2), constrained_layout=True)
    top = max(r["params"] for r in rows)
    for prefix, color, label in (("band", "tab:red", "band"), ("strat", "tab:blue", "stratified")):
        group = [r for r in rows if r["name"].startswith(prefix)]
        other = prefix == "strat"
        if other:
            group += [r for r in rows if not r["name"].startswith(("band", "strat"))]
        if not group:
            continue
        sizes = [20 + 180 * r["params"] / top for r in group]
        ax.scatter(
            [r["inherited_acc1"] for r in group],
            [r["standalone_acc1"] for r in group],
            s=sizes,
            c=color,
            alpha=0.7,
            label=f"{label}: standalone",
        )
        tuned = [r for r in group if "finetuned_acc1" in r]
        if tuned:
            ax.scatter(
                [r["inherited_acc1"] for r in tuned],
                [r["finetuned_acc1"] for r in tuned],
                s=[20 + 180 * r["params"] / top for r in tuned],
                c=color,
                marker="^",
                alpha=0.5,
                label=f"{label}: finetuned",
            )
    lo = min(min(r["inherited_acc1"], r["standalone_acc1"]) for r in rows) - 1
    hi = max(max(r["inherited_acc1"], r["standalone_acc1"]) for r in rows) + 1
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="standalone = inherited")
    ax.set_xlabel("inherited weights, top-1 (%)")
    ax.set_ylabel("trained alone, top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def run(cfg: DictConfig) -> dict[str, Any]:
    check_settings(cfg)
    eval_settings = EvalSettings.from_dict(cfg.eval)
    loaded = open_checkpoint(cfg)
    recipe = loaded.rerun_config(RUN_DIR_PLACEHOLDER)  # refuses format-1 checkpoints
    archs = parse_arch_spec(cfg.archs, loaded.space, cfg.seed, "archs", cost=loaded.net.cost)
    if len(archs) < 2:
        raise ConfigError(f"archs={plain(cfg.archs)} names {len(archs)} arch; ranking needs 2+")
    out = output_dir()
    dm = loaded.datamodule(cfg.get("data"))
    fabric = eval_fabric(cfg)
    evaluator = SubnetEvaluator(
        loaded.net,
        dm.eval_dataloader(cfg.split),
        fabric,
        cache=eval_settings.cache,
        max_batches=eval_settings.max_batches,
    )
    scores = evaluator.evaluate(list(archs.values()), progress=True)
    inherited = {name: 100 * s.acc1 for name, s in zip(archs, scores)}
    # the standalone/finetuned weights are scored in a copy, so the supernet stays as loaded
    scorer = SubnetEvaluator(
        load_supernet(cfg.ckpt_path).net, dm.eval_dataloader(cfg.split), fabric, cache=True
    )
    jobs = plan(cfg, loaded, archs, out)
    runner = Runner(cfg, out, scorer, archs)
    for job in jobs:  # before anything is written: a reused name= with other archs fails here
        runner.check_identity(job)
    atomic_write_text(out / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))
    for name, arch in archs.items():
        atomic_write_text(out / "archs" / f"{name}.yaml", arch.to_yaml())
    trained = runner.run_all(jobs)
    result = report(cfg, loaded, archs, inherited, trained)
    result.update(
        checkpoint=str(cfg.ckpt_path),
        space=loaded.space.name,
        split=cfg.split,
        images=scores[0].num_images,
        archs_spec=plain(cfg.archs),
        standalone=plain(cfg.standalone),
        finetune=plain(cfg.finetune),
        recipe=loaded.recipe,
        format="ovo.rank",
        version=1,
    )
    if fabric.global_rank == 0:
        atomic_write_json(out / "ranking.json", ranking.json_safe(result))
        s = result["summary"]["inherited_vs_standalone"]
        plot_ranking(
            result["rows"],
            out / "ranking.png",
            f"'{loaded.space.name}' supernet, {len(archs)} archs on {cfg.split}: Kendall tau "
            f"{_num(s['kendall_tau'], '.2f')} [{_num(s['kendall_tau_ci95'][0], '.2f')}, "
            f"{_num(s['kendall_tau_ci95'][1], '.2f')}]",
        )
        _wandb(cfg, out, result)
        print_report(result, out)
    return result


def _wandb(cfg: DictConfig, out: Path, result: dict[str, Any]) -> None:
    run = open_wandb(cfg, out, "rank")
    if run is None:
        return
    import wandb

    columns = ["name", "arch", "params_M", "inherited", "standalone", "gap", "finetuned"]
    table = wandb.Table(columns=columns)
    for r in result["rows"]:
        table.add_data(
            r["name"],
            r["arch"],
            r["params"] / 1e6,
            r["inherited_acc1"],
            r["standalone_acc1"],
            r["gap"],
            r.get("finetuned_acc1"),
        )
    s = result["summary"]["inherited_vs_standalone"]
    run.log({"rank/archs": table, "rank/plot": wandb.Image(str(out / "ranking.png"))})
    run.summary.update({f"rank/{k}": v for k, v in s.items() if isinstance(v, int | float)})
    run.finish()


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "undefined" if value is None or value != value else format(value, fmt)


def print_report(result: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = result["rows"]
    table = Table(title=f"{result['split']} split, {result['images']} images")
    columns = ["name", "params (M)", "inherited %", "standalone %", "gap"]
    tuned = all("finetuned_acc1" in r for r in rows)
    if tuned:
        columns.append("finetuned %")
    for col in columns:
        table.add_column(col, justify="left" if col == "name" else "right")
    for r in rows:
        cells = [
            r["name"],
            f"{r['params'] / 1e6:.3f}",
            f"{r['inherited_acc1']:.2f}",
            f"{r['standalone_acc1']:.2f}",
            f"{r['gap']:+.2f}",
        ]
        if tuned:
            cells.append(f"{r['finetuned_acc1']:.2f}")
        table.add_row(*cells)
    Console().print(table)
    s = result["summary"]["inherited_vs_standalone"]
    ci = s["kendall_tau_ci95"]
    lines = [
        f"Kendall tau {_num(s['kendall_tau'])} (95% CI {_num(ci[0], '.2f')} to "
        f"{_num(ci[1], '.2f')}), Spearman rho {_num(s['spearman_rho'])} over {s['n']} archs",
        "tau within params bins: "
        + ", ".join(f"{_num(b['tau'], '.2f')} (n={b['n']})" for b in s["tau_by_params_bin"]),
        f"top-{s['top_k']} overlap {s['top_k_overlap']:.2f}; retrain gap mean "
        f"{s['gap_mean']:+.2f}, max {s['gap_max']:+.2f} points",
    ]
    ceiling = result["summary"].get("noise_ceiling")
    if ceiling:
        lines.append(
            f"noise ceiling: tau between two standalone seeds "
            f"{_num(ceiling['kendall_tau_seed0_vs_seed1'])}"
        )
    finetune = result["summary"].get("finetune")
    if finetune:
        lines.append(
            f"finetune ({finetune['epochs']} epochs): +{finetune['gain_mean']:.2f} points over "
            f"inherited, {finetune['remaining_gap_mean']:+.2f} left to standalone"
        )
    outputs = {"ranking": out / "ranking.json", "plot": out / "ranking.png"}
    print_outputs("ovo rank finished", outputs, lines)


main = hydra_command("rank", run)
