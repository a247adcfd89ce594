"""``python -m ovo.search ckpt_path=...``: search a trained supernet under a params/FLOPs budget.

Fitness is top-1 on the held-out search split of the training data (never val/test); the top-k
are then scored once on ``final_split``. Outputs in the run directory: ``results.json``,
``best_arch.yaml``, ``pareto.png``, ``search_state.json`` (resume), and a W&B run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ovo.atomic import atomic_write_json, atomic_write_text
from ovo.budget import Constraints, check_feasible
from ovo.checkpoint import LoadedSupernet
from ovo.commands.cli import hydra_command, output_dir, print_outputs
from ovo.commands.from_checkpoint import (
    compile_for_eval,
    compile_line,
    compile_settings,
    eval_fabric,
    open_checkpoint,
    open_wandb,
)
from ovo.commands.rundir import run_dir_lock
from ovo.data.splits import check_eval_split
from ovo.errors import ConfigError
from ovo.export import export_subnet
from ovo.latency import LatencyTable, measure_model_ms, same_machine
from ovo.scoring import EvalSettings, SubnetEvaluator
from ovo.search.fitness import FullFitness, Halving, HalvingSettings
from ovo.search.loop import Search, SearchSettings
from ovo.search.plot import plot_pareto
from ovo.search.result import EvaluatedArch, GenerationRecord
from ovo.settings import plain, settings_from
from ovo.space import Arch
from ovo.training.faults import kill_self
from ovo.units import format_count


class WandbSearchLog:
    """Per-generation metrics and table, final Pareto plot; a no-op when disabled. A context
    manager: the W&B run is closed however the search ends (marked failed if it raised)."""

    def __init__(self, cfg: DictConfig, out: Path, enabled: bool) -> None:
        self.run = open_wandb(cfg, out, "search") if enabled else None
        if self.run is not None:
            import wandb  # here: W&B is optional at run time (the lent GPU image has none; NOTES.md)

            self.wandb = wandb

    def generation(self, gen: int, record: GenerationRecord, new: list[EvaluatedArch]) -> None:
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
        self.close()

    def close(self, failed: bool = False) -> None:
        """End the W&B run (idempotent)."""
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=1 if failed else 0)

    def __enter__(self) -> WandbSearchLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close(failed=kind is not None)


def run(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    out = output_dir()
    settings = SearchSettings.from_config(cfg)
    halving_settings = settings_from(HalvingSettings, cfg.get("halving"), "halving")
    constraints = Constraints.from_dict(cfg.constraints)
    if cfg.top_k < 1:
        raise ConfigError(f"top_k={cfg.top_k} must be at least 1")
    check_eval_split(cfg.final_split, "final_split")
    eval_settings = EvalSettings.from_dict(cfg.eval)
    compile_settings(cfg)
    loaded = open_checkpoint(cfg)
    space, cost = loaded.space, loaded.net.cost
    check_feasible(space, cost, constraints, seed=settings.seed)  # before loading any data

    fabric = eval_fabric(cfg)
    rank0 = fabric.global_rank == 0
    # rank 0 holds the run directory: a second search into it refuses (the other ranks are
    # this search's own processes)
    with (
        run_dir_lock(out, "search") if rank0 else contextlib.nullcontext(),
        WandbSearchLog(cfg, out, enabled=bool(cfg.wandb.enabled) and rank0) as wb,
    ):
        dm = loaded.datamodule(cfg.get("data"))
        halving = settings.fitness == "halving"
        evaluator = SubnetEvaluator(
            loaded.net,
            # successive halving reads prefixes: a seeded, class-stratified order
            dm.search_dataloader(stratified_seed=settings.seed if halving else None),
            fabric,
            cache=eval_settings.cache,
            max_batches=eval_settings.max_batches,
        )
        split_images = evaluator.num_images()
        compiled = compile_for_eval(evaluator.net, cfg, fabric, dm.eval_batch_size)
        progress = Progress(
            TextColumn("[bold]search[/] gen {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(),
            disable=not rank0,
        )
        task = progress.add_task("search", total=settings.generations, best="-")
        kill_after = cfg.get("fault", {}).get("kill_after_generation")

        def on_generation(gen: int, record: GenerationRecord, new: list[EvaluatedArch]) -> None:
            wb.generation(gen, record, new)
            progress.update(task, completed=gen + 1, best=f"{record.best_fitness:.2f}%")
            if kill_after == gen:
                kill_self()  # fault injection (tests): the state of `gen` is already on disk

        def fitness(archs: list) -> list[float]:
            return [100.0 * s.acc1 for s in evaluator.evaluate(archs)]

        def score_range(archs: list, start: int, stop: int) -> list[int]:
            return [s.hits1 for s in evaluator.evaluate(archs, images=(start, stop))]

        race = (
            Halving(score_range, split_images, halving_settings)
            if halving
            else FullFitness(fitness, split_images)
        )
        search = Search(
            space,
            cost,
            constraints,
            race,
            settings,
            state_path=out / "search_state.json",
            context={
                "checkpoint": str(Path(cfg.ckpt_path).resolve()),
                "global_step": loaded.global_step,
                "data": plain(cfg.get("data")) or {},
                "max_batches": eval_settings.max_batches,
                # the table's numbers, not its path, decide which archs are within budget
                **({"latency_table": constraints.table.fingerprint()} if constraints.table else {}),
            },
            on_generation=on_generation,
            budget_checked=True,  # above, before any data was loaded
        )
        with progress:
            result = search.run()
        search_seconds = time.perf_counter() - start

        top = result.top_k(cfg.top_k)
        final_loader = dm.eval_dataloader(cfg.final_split)
        final = SubnetEvaluator(loaded.net, final_loader, fabric, cache=False).evaluate(
            [e.arch for e in top]
        )
        split = cfg.final_split
        summary = {
            "checkpoint": str(cfg.ckpt_path),
            "space": space.name,
            "constraints": constraints.to_dict(),
            "fitness_split": f"search ({len(dm.split_indices()['search'])} held-out train images)",
            "final_split": split,
            "best": {
                **result.best.to_dict(),
                f"{split}_acc1": final[0].acc1 * 100,
                f"{split}_acc5": final[0].acc5 * 100,
            },
            "final": [
                {**e.to_dict(), f"{split}_acc1": s.acc1 * 100, f"{split}_acc5": s.acc5 * 100}
                for e, s in zip(top, final)
            ],
            "num_evaluated": len(result.evaluated),
            "num_fully_scored": sum(e.complete for e in result.evaluated),
            "images_scored": result.images_scored,
            "fitness": race.settings() | {"split_images": split_images},
            "search_seconds": search_seconds,
            "eval_throughput_arch_images_per_s": evaluator.throughput,
            "archs_per_second": len(result.evaluated) / max(evaluator.seconds, 1e-9),
            "compiled_graphs": None if compiled is None else compiled.graphs,
        }
        table = constraints.table
        if table is not None:
            summary["best"]["latency_ms_predicted"] = table.predict(result.best_arch)
            measured = best_latency_here(loaded, result.best_arch, table) if rank0 else None
            summary["best"]["latency_ms_measured"] = measured
            summary["latency_table"] = {
                "path": constraints.latency_table,
                **table.conditions.to_dict(),
            }
        if rank0:
            atomic_write_json(out / "results.json", {**result.to_dict(top_k=cfg.top_k), **summary})
            atomic_write_text(out / "best_arch.yaml", result.best_arch.to_yaml())
            png = plot_pareto(
                result,
                out / "pareto.png",
                f"{settings.strategy} on '{space.name}' ({constraints.describe()})",
            )
            wb.finish({k: v for k, v in summary.items() if not isinstance(v, list | dict)}, png)
            print_summary(summary, out, compile_line(compiled))
        return summary


def best_latency_here(loaded: LoadedSupernet, arch: Arch, table: LatencyTable) -> float | None:
    """The exported best arch's latency measured under the table's conditions, when this is the
    machine the table was measured on (else ``None``: a number from another device would not
    check the prediction)."""
    if not same_machine(table):
        return None
    model = export_subnet(loaded.net, arch).eval()  # a copy; moved to the table's device
    return measure_model_ms(model, loaded.cfg, table.conditions.measuring())


def print_summary(summary: dict[str, Any], out: Path, extra: list[str] = ()) -> None:
    best = summary["best"]
    split = summary["final_split"]
    lines = [
        f"{summary['num_evaluated']} archs evaluated ({summary['num_fully_scored']} on the whole "
        f"fitness split of {summary['fitness']['split_images']} images) in "
        f"{summary['search_seconds']:.1f}s: {summary['images_scored']:,} arch-images scored "
        f"({summary['fitness']['mode']}, {summary['eval_throughput_arch_images_per_s']:.0f} "
        "arch-images/s)",
        f"best arch: {format_count(best['params'])} params, {format_count(best['flops'])} MACs, "
        f"search top-1 {best['fitness']:.2f}%, {split} top-1 {best[f'{split}_acc1']:.2f}%",
        *extra,
    ]
    if "latency_ms_predicted" in best:
        measured = best["latency_ms_measured"]
        lines.append(
            f"best arch latency: {best['latency_ms_predicted']:.3g} ms predicted, "
            + (
                f"{measured:.3g} ms measured here"
                if measured is not None
                else "not measured (the table is from another machine)"
            )
        )
    outputs = {
        "results": out / "results.json",
        "best arch": out / "best_arch.yaml",
        "plot": out / "pareto.png",
    }
    print_outputs("ovo search finished", outputs, lines)


main = hydra_command("search", run)
