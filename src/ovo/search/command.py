"""``python -m ovo.search ckpt_path=...``: search a trained supernet under a params/FLOPs budget.

Fitness is top-1 on the held-out search split of the training data (never val/test); the top-k
are then scored once on ``final_split``. Outputs in the run directory: ``results.json``,
``best_arch.yaml``, ``pareto.png``, ``search_state.json`` (resume), and a W&B run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ovo.checkpoint import load_supernet
from ovo.cli import datamodule_from_checkpoint, output_dir, to_plain, user_errors_exit
from ovo.errors import ConfigError
from ovo.evaluation import SubnetEvaluator, fabric_from_config
from ovo.faults import kill_self
from ovo.paths import conf_dir
from ovo.search.constraints import Constraints, check_feasible, format_count
from ovo.search.evolution import make_search
from ovo.search.result import GenerationRecord, SearchResult
from ovo.search.state import atomic_write_json
from ovo.space import SearchSpace


def plot_pareto(result: SearchResult, path: Path, title: str = "") -> Path:
    """Accuracy vs params and vs FLOPs of every evaluated arch, with both Pareto fronts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    # MACs in G for ImageNet-sized subnets, in M for small ones (CIFAR, nano), never 0.0x G
    giga = max((e.flops for e in result.evaluated), default=0) >= 1e9
    for ax, key, unit, scale in (
        (axes[0], "params", "params (M)", 1e6),
        (axes[1], "flops", "MACs (G)" if giga else "MACs (M)", 1e9 if giga else 1e6),
    ):
        xs = [getattr(e, key) / scale for e in result.evaluated]
        ys = [e.fitness for e in result.evaluated]
        gens = [e.generation for e in result.evaluated]
        sc = ax.scatter(xs, ys, c=gens, cmap="viridis", s=12, alpha=0.7)
        front = result.pareto(key)
        ax.plot(
            [getattr(e, key) / scale for e in front],
            [e.fitness for e in front],
            "r.-",
            label="Pareto front",
        )
        best = result.best
        ax.scatter(
            [getattr(best, key) / scale], [best.fitness], marker="*", s=200, c="red", label="best"
        )
        ax.set_xlabel(unit)
        ax.set_ylabel("top-1 on search split (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.colorbar(sc, ax=axes, label="generation")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class WandbSearchLog:
    """Per-generation metrics and table, final Pareto plot; a no-op when disabled."""

    def __init__(self, cfg: DictConfig, out: Path, enabled: bool) -> None:
        self.run = None
        if not enabled:
            return
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.wandb.project,
            dir=str(out),
            job_type="search",
            name=f"search-{cfg.name}",
            config=to_plain(cfg),
            mode="offline" if cfg.wandb.offline else "online",
            reinit="finish_previous",  # a search in the same process as training
        )

    def generation(self, gen: int, record: GenerationRecord, new: list[Any]) -> None:
        if self.run is None:
            return
        table = self.wandb.Table(columns=["generation", "arch", "params_M", "gmacs", "fitness"])
        for e in new:
            table.add_data(gen, e.arch.short(), e.params / 1e6, e.flops / 1e9, e.fitness)
        self.run.log(
            {
                "search/generation": gen,
                "search/best_fitness": record.best_fitness,
                "search/mean_top_k": record.mean_top_k,
                "search/num_evaluated": record.num_evaluated,
                "search/candidates": table,
            }
        )

    def finish(self, summary: dict[str, Any], pareto_png: Path) -> None:
        if self.run is None:
            return
        self.run.log({"search/pareto": self.wandb.Image(str(pareto_png))})
        self.run.summary.update(summary)
        self.run.finish()


def run_search(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    out = output_dir()
    expected = SearchSpace.from_dict(to_plain(cfg.space)) if cfg.get("space") else None
    loaded = load_supernet(cfg.ckpt_path, expected_space=expected)
    space, cost = loaded.space, loaded.net.cost
    constraints = Constraints.from_dict(to_plain(cfg.constraints))
    check_feasible(space, cost, constraints, seed=cfg.seed)  # before loading any data

    fabric = fabric_from_config(cfg.eval)
    dm = datamodule_from_checkpoint(loaded.hparams, cfg.get("data"))
    evaluator = SubnetEvaluator(
        loaded.net,
        dm.search_dataloader(),
        fabric,
        cache=cfg.eval.cache,
        max_batches=cfg.eval.max_batches,
    )
    rank0 = fabric.global_rank == 0
    wb = WandbSearchLog(cfg, out, enabled=bool(cfg.wandb.enabled) and rank0)
    progress = Progress(
        TextColumn("[bold]search[/] gen {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        disable=not rank0,
    )

    def fitness(archs: list) -> list[float]:
        return [100.0 * s.acc1 for s in evaluator.evaluate(archs)]

    search = make_search(
        cfg.strategy,
        space,
        cost,
        constraints,
        fitness,
        population=cfg.population,
        generations=cfg.generations,
        parents=cfg.parents,
        mutations=cfg.mutations,
        crossovers=cfg.crossovers,
        mutation_prob=cfg.mutation_prob,
        depth_embed_prob=cfg.depth_embed_prob,
        seed=cfg.seed,
        state_path=out / "search_state.json",
        context={
            "checkpoint": str(Path(cfg.ckpt_path).resolve()),
            "global_step": loaded.global_step,
            "data": to_plain(cfg.get("data")) or {},
            "max_batches": cfg.eval.max_batches,
        },
    )
    task = progress.add_task("search", total=cfg.generations, best="-")

    def on_generation(gen: int, record: GenerationRecord) -> None:
        new = [e for e in search.result().evaluated if e.generation == gen]
        wb.generation(gen, record, new)
        progress.update(task, completed=gen + 1, best=f"{record.best_fitness:.2f}%")
        if cfg.get("fault", {}).get("kill_after_generation") == gen:
            kill_self()  # fault injection (tests): the state of `gen` is already on disk

    search.on_generation = on_generation
    with progress:
        result = search.run()
    search_seconds = time.perf_counter() - start

    top = result.top_k(cfg.top_k)
    final_loader = dm.val_dataloader() if cfg.final_split == "val" else dm.search_dataloader()
    final_eval = SubnetEvaluator(loaded.net, final_loader, fabric, cache=False)
    final = final_eval.evaluate([e.arch for e in top])
    summary = {
        "checkpoint": str(cfg.ckpt_path),
        "space": space.name,
        "constraints": constraints.to_dict(),
        "fitness_split": f"search ({len(dm.split_indices()['search'])} held-out train images)",
        "final_split": cfg.final_split,
        "best": {
            **result.best.to_dict(),
            f"{cfg.final_split}_acc1": final[0].acc1 * 100,
            f"{cfg.final_split}_acc5": final[0].acc5 * 100,
        },
        "final": [
            {
                **e.to_dict(),
                f"{cfg.final_split}_acc1": s.acc1 * 100,
                f"{cfg.final_split}_acc5": s.acc5 * 100,
            }
            for e, s in zip(top, final)
        ],
        "num_evaluated": len(result.evaluated),
        "search_seconds": search_seconds,
        "eval_throughput_arch_images_per_s": evaluator.throughput,
        "archs_per_second": len(result.evaluated) / max(evaluator.seconds, 1e-9),
    }
    if rank0:
        atomic_write_json(out / "results.json", {**result.to_dict(top_k=cfg.top_k), **summary})
        result.best_arch.to_yaml(out / "best_arch.yaml")
        png = plot_pareto(
            result,
            out / "pareto.png",
            f"{cfg.strategy} on '{space.name}' ({constraints.describe()})",
        )
        wb.finish({k: v for k, v in summary.items() if not isinstance(v, list | dict)}, png)
        print_summary(summary, out)
    return summary


def print_summary(summary: dict[str, Any], out: Path) -> None:
    best = summary["best"]
    split = summary["final_split"]
    lines = [
        "",
        f"ovo search finished: {summary['num_evaluated']} archs evaluated in "
        f"{summary['search_seconds']:.1f}s ({summary['archs_per_second']:.2f} archs/s, "
        f"{summary['eval_throughput_arch_images_per_s']:.0f} arch-images/s)",
        f"  best arch: {format_count(best['params'])} params, {format_count(best['flops'])} MACs, "
        f"search top-1 {best['fitness']:.2f}%, {split} top-1 {best[f'{split}_acc1']:.2f}%",
        f"  results:   {out / 'results.json'}",
        f"  best arch: {out / 'best_arch.yaml'}",
        f"  plot:      {out / 'pareto.png'}",
    ]
    print("\n".join(lines), flush=True)


@hydra.main(config_path=str(conf_dir()), config_name="search", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    if cfg.strategy not in ("evolution", "random"):
        raise ConfigError(f"strategy={cfg.strategy}: use evolution or random")
    run_search(cfg)
