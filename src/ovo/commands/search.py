"""``python -m ovo.search ckpt_path=...``: search a trained supernet under a params/FLOPs budget.

Fitness is top-1 on the held-out search split of the training data (never val/test); the top-k
and the front's members are then scored once on ``final_split``. Outputs in the run directory:
``results.json`` (:mod:`ovo.search.result`), ``best_arch.yaml``, ``pareto.png``, ``front.json``,
``front.csv``, ``front.png`` (:mod:`ovo.search.front`; without pymoo only for nsga2/linas, which
need it), ``evaluations.jsonl``, ``search_state.json`` (resume), and a W&B run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ovo.atomic import atomic_write_text
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
from ovo.latency import LatencyTable, load_table, measure_model_ms, same_machine
from ovo.scoring import EvalSettings, SubnetEvaluator
from ovo.search.fitness import FullFitness, Halving, HalvingSettings
from ovo.search.front import Front, build_front, front_entries, front_hypervolume, write_front
from ovo.search.linas import LinasSettings
from ovo.search.loop import MULTI_OBJECTIVE, Search, SearchSettings
from ovo.search.moo import moo_available, require_moo
from ovo.search.objectives import Objectives
from ovo.search.plot import plot_front, plot_pareto
from ovo.search.result import (
    EvaluatedArch,
    FinalScore,
    GenerationRecord,
    RunFacts,
    SearchReport,
    write_results,
)
from ovo.search.warm import indices_fingerprint, read_warm_source, weights_fingerprint
from ovo.settings import plain, settings_from
from ovo.space import Arch
from ovo.units import format_count

LATENCY_KEYS = ("latency_table", "latency_device", "latency_runtime")


class WandbSearchLog:
    """Per-generation metrics and table, final Pareto plot, front table and plot; a no-op when
    disabled. A context manager: the W&B run is closed however the search ends (marked failed
    if it raised)."""

    def __init__(self, cfg: DictConfig, out: Path, enabled: bool) -> None:
        self.run = open_wandb(cfg, out, "search") if enabled else None
        if self.run is not None:
            import wandb  # here: W&B is optional at run time (the lent GPU image has none; NOTES.md)

            self.wandb = wandb

    def generation(
        self,
        gen: int,
        record: GenerationRecord,
        new: list[EvaluatedArch],
        extra: dict[str, float | None],
    ) -> None:
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
                **{f"search/{k}": v for k, v in extra.items() if v is not None},
            }
        )

    def finish(
        self,
        summary: dict[str, Any],
        pareto_png: Path,
        front: Front | None = None,
        front_png: Path | None = None,
    ) -> None:
        if self.run is None:
            return
        logged: dict[str, Any] = {"search/pareto": self.wandb.Image(str(pareto_png))}
        if front is not None:
            columns = ["name", "arch", "acc", "params", "macs", "latency_ms", "final_acc1"]
            table = self.wandb.Table(columns=columns)
            for m in front.members:
                table.add_data(
                    m.name, m.arch.short(), m.acc, m.params, m.macs, m.latency_ms, m.final_acc1
                )
            logged["search/front"] = table
        if front_png is not None:
            logged["search/front_plot"] = self.wandb.Image(str(front_png))
        self.run.log(logged)
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


def objectives_and_constraints(cfg: DictConfig) -> tuple[Objectives, Constraints]:
    """The objectives and the budget box, checked (before any work). A latency objective takes
    ``constraints.latency_table`` without a latency budget: the table then only predicts."""
    raw = dict(plain(cfg.get("constraints")) or {})
    names = cfg.get("objectives")
    names = plain(names) if names is not None else None
    wants_latency = "latency" in (
        names if isinstance(names, list) else str(names or "").replace(" ", "").split(",")
    )
    table = None
    if wants_latency and raw.get("latency_table") and raw.get("latency_ms_max") is None:
        table = load_table(str(raw["latency_table"]))
        constraints = Constraints.from_dict({k: v for k, v in raw.items() if k not in LATENCY_KEYS})
    else:
        constraints = Constraints.from_dict(raw)
        table = constraints.table
    return Objectives.parse(names, table), constraints


def search_callbacks(cfg: DictConfig) -> list[Any]:
    """The search's ``callbacks`` (each with ``on_generation(generation, record, new)``),
    instantiated as training instantiates its own (``_target_``)."""
    if cfg.get("fault") is not None:
        raise ConfigError(
            "fault.kill_after_generation is gone: a search takes callbacks as training does, "
            "+callbacks.fault._target_=ovo.training.faults.KillAfterGeneration "
            "+callbacks.fault.generation=G"
        )
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]


def run(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    out = output_dir()
    settings = SearchSettings.from_config(cfg)
    halving_settings = settings_from(HalvingSettings, cfg.get("halving"), "halving")
    linas_settings = LinasSettings.from_dict(cfg.get("linas"))
    if settings.strategy in MULTI_OBJECTIVE:
        require_moo(f"strategy={settings.strategy}")
    objectives, constraints = objectives_and_constraints(cfg)
    callbacks = search_callbacks(cfg)
    if cfg.top_k < 1:
        raise ConfigError(f"top_k={cfg.top_k} must be at least 1")
    check_eval_split(cfg.final_split, "final_split")
    eval_settings = EvalSettings.from_dict(cfg.eval)
    compile_settings(cfg)
    warm = read_warm_source(cfg.warm_start, out) if cfg.get("warm_start") else None
    loaded = open_checkpoint(cfg)
    space, cost = loaded.space, loaded.net.cost
    if objectives.table is not None and constraints.table is None:  # a latency objective alone
        c = plain(cfg.constraints)
        objectives.table.check_matches(
            space, loaded.cfg, cost.head_dim, c.get("latency_device"), c.get("latency_runtime")
        )
    check_feasible(space, cost, constraints, seed=settings.seed)  # before loading any data
    scored_with: dict[str, Any] = {"weights": weights_fingerprint(loaded.net.state_dict())}
    if warm is not None:
        warm.check(scored_with, ["weights"])
    dm = loaded.datamodule(cfg.get("data"))
    scored_with |= {
        "split": "search",
        "split_indices": indices_fingerprint(dm.split_indices()["search"]),
        "max_batches": eval_settings.max_batches,
    }
    if warm is not None:
        warm.check(scored_with, ["split", "split_indices", "max_batches"])
    # fronts need pymoo; without it the single-objective strategies still run as before
    fronts = moo_available()

    fabric = eval_fabric(cfg)
    rank0 = fabric.global_rank == 0
    # rank 0 holds the run directory: a second search into it refuses (the other ranks are
    # this search's own processes)
    with (
        run_dir_lock(out, "search") if rank0 else contextlib.nullcontext(),
        WandbSearchLog(cfg, out, enabled=bool(cfg.wandb.enabled) and rank0) as wb,
    ):
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
        scored_with["split_images"] = split_images
        if warm is not None:
            warm.check(scored_with, ["split_images"])
        compiled = compile_for_eval(evaluator.net, cfg, fabric, dm.eval_batch_size)
        progress = Progress(
            TextColumn("[bold]search[/] gen {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(),
            disable=not rank0,
        )
        task = progress.add_task("search", total=settings.generations, best="-")
        reference = objectives.reference(space, cost)

        def on_generation(gen: int, record: GenerationRecord, new: list[EvaluatedArch]) -> None:
            extra: dict[str, float | None] = {}
            if wb.run is not None and fronts:
                extra["hypervolume"] = front_hypervolume(search.scored(), objectives, reference)
            loops = [r for r in search.proposal.log() if r["loop"] == gen]
            if loops:
                extra |= {f"linas/{k}": loops[0][k] for k in ("kendall_tau", "mape", "cv_mae")}
            wb.generation(gen, record, new, extra)
            progress.update(task, completed=gen + 1, best=f"{record.best_fitness:.2f}%")
            for callback in callbacks:  # after the state of `gen` is on disk (fault injection)
                callback.on_generation(gen, record, new)

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
            objectives=objectives,
            linas=linas_settings,
            warm=warm.entries if warm is not None else (),
            scored_with=scored_with,
            evaluations_path=out / "evaluations.jsonl",
        )
        with progress:
            result = search.run()
        search_seconds = time.perf_counter() - start

        # the top-k and every front member, each scored once on the final split
        top = result.top_k(cfg.top_k)
        members = front_entries(result.evaluated, objectives) if fronts else []
        finalists = list(dict.fromkeys([e.arch for e in top] + [e.arch for e in members]))
        final_loader = dm.eval_dataloader(cfg.final_split)
        scores = SubnetEvaluator(loaded.net, final_loader, fabric, cache=False).evaluate(finalists)
        final = {a: FinalScore(s.acc1 * 100, s.acc5 * 100) for a, s in zip(finalists, scores)}
        split = cfg.final_split
        front = None
        if fronts:
            table = objectives.table
            front = build_front(
                result.evaluated,
                [r.generation for r in result.history],
                objectives,
                reference,
                final_split=split,
                final={a: (s.acc1, s.acc5) for a, s in final.items()},
                space=space.to_dict(),
                latency_table=None
                if table is None
                else {
                    "path": table.path,
                    "fingerprint": table.fingerprint(),
                    "device": table.conditions.device,
                    "runtime": table.runtime,
                },
            )
        budget_table = constraints.table
        predicted = measured = None
        if budget_table is not None:
            predicted = budget_table.predict(result.best_arch)
            measured = best_latency_here(loaded, result.best_arch, budget_table) if rank0 else None
        facts = RunFacts(
            checkpoint=str(cfg.ckpt_path),
            space=space.name,
            fitness_split=f"search ({len(dm.split_indices()['search'])} held-out train images)",
            final_split=split,
            fitness=race.settings() | {"split_images": split_images},
            search_seconds=search_seconds,
            eval_throughput=evaluator.throughput,
            archs_per_second=len(result.evaluated) / max(evaluator.seconds, 1e-9),
            compiled_graphs=None if compiled is None else compiled.graphs,
            latency_table=None
            if budget_table is None
            else {"path": constraints.latency_table, **budget_table.conditions.to_dict()},
            best_latency_predicted=predicted,
            best_latency_measured=measured,
            scored_with=scored_with,
            warm_start=None if warm is None else warm.describe(),
        )
        report = SearchReport(result, facts, cfg.top_k, final, front)
        summary = report.to_dict()
        if rank0:
            title = f"{settings.strategy} on '{space.name}' ({constraints.describe()})"
            write_results(out / "results.json", report)
            atomic_write_text(out / "best_arch.yaml", result.best_arch.to_yaml())
            png = plot_pareto(result, out / "pareto.png", title)
            front_png = None
            if front is not None:
                write_front(out, front)
                front_png = plot_front(
                    result.evaluated, front, objectives, constraints, out / "front.png", title
                )
            flat = {k: v for k, v in summary.items() if not isinstance(v, list | dict)}
            if front is not None:
                flat["hypervolume"] = front.hypervolume
                flat[f"hypervolume_{split}"] = front.final_hypervolume
            wb.finish(flat, png, front, front_png)
            print_summary(summary, out, compile_line(compiled), front)
        return summary


def best_latency_here(loaded: LoadedSupernet, arch: Arch, table: LatencyTable) -> float | None:
    """The exported best arch's latency measured under the table's conditions, when this is the
    machine the table was measured on (else ``None``: a number from another device would not
    check the prediction)."""
    if not same_machine(table):
        return None
    model = export_subnet(loaded.net, arch).eval()  # a copy; moved to the table's device
    return measure_model_ms(model, loaded.cfg, table.conditions.measuring())


def print_summary(
    summary: dict[str, Any], out: Path, extra: list[str] = (), front: Front | None = None
) -> None:
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
    if front is not None:
        lines.append(
            f"front: {len(front.members)} archs over {', '.join(front.objectives)}; hypervolume "
            f"{front.hypervolume:.4f} (search), {front.final_hypervolume:.4f} ({split})"
        )
    outputs = {
        "results": out / "results.json",
        "best arch": out / "best_arch.yaml",
        "plot": out / "pareto.png",
    }
    if front is not None:
        outputs |= {"front": out / "front.json", "front table": out / "front.csv"}
        outputs |= {"front plot": out / "front.png"}
    outputs["evaluations"] = out / "evaluations.jsonl"
    print_outputs("ovo search finished", outputs, lines)


main = hydra_command("search", run)
