"""``python -m ovo.train [experiment=NAME] [overrides]``: train a supernet with online distillation.

Composes ``conf/train.yaml``, builds data, module and trainer (each checked before fitting: a
setting they refuse is one ``ovo: error:`` line), fits, and prints where the checkpoints and
logs are. Checkpoints carry the training record of :mod:`ovo.checkpoint`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelSummary, RichModelSummary
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from rich import get_console
from rich.table import Table

from ovo.archspec import parse_one_arch
from ovo.atomic import atomic_write_json
from ovo.checkpoint import RecordTraining, check_checkpoint_path, load_supernet, read_checkpoint
from ovo.commands.cli import hydra_command, print_outputs
from ovo.commands.rundir import check_writable
from ovo.data import datamodule_from_config
from ovo.errors import ConfigError
from ovo.settings import plain
from ovo.space import SearchSpace
from ovo.training import hydra_ddp
from ovo.training.module import OVOModule
from ovo.units import format_count


def build_module(cfg: DictConfig, datamodule: Any) -> OVOModule:
    """The LightningModule, with model settings the config leaves null taken from the data."""
    model = plain(cfg.model)
    for key in ("img_size", "in_chans", "num_classes"):
        if model.get(key) is None:
            model[key] = int(getattr(datamodule, key))
    return OVOModule(
        space=plain(cfg.space),
        model=model,
        distill=plain(cfg.distill),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler),
        mixup=plain(cfg.mixup),
        panel=plain(cfg.panel),
        label_smoothing=cfg.label_smoothing,
        seed=cfg.seed,
        arch_trace_path=cfg.get("arch_trace_path"),
        usage_path=str(Path(cfg.paths.output_dir) / "usage.json")
        if cfg.get("usage_counts")
        else None,
        fixed_arch=fixed_arch_config(cfg.get("fixed_arch"), plain(cfg.space)),
        compile=cfg.get("compile", "none"),
        compile_options=plain(cfg.get("compile_options")),
    )


def fixed_arch_config(spec: Any, space: dict[str, Any]) -> dict[str, Any] | None:
    """``fixed_arch`` as a plain mapping: any one-arch spec ``ovo.evaluate`` takes (``max``, an
    arch file such as a search's best_arch.yaml, an inline mapping)."""
    if spec is None:
        return None
    return parse_one_arch(spec, SearchSpace.from_dict(space), "fixed_arch")[1].to_dict()


def instantiate_all(node: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a group like ``callbacks`` or ``logger``."""
    if not node:
        return []
    return [instantiate(v) for v in node.values() if isinstance(v, DictConfig) and "_target_" in v]


def build_trainer(cfg: DictConfig, callbacks: list[Any], loggers: list[Any]) -> L.Trainer:
    """``lightning.Trainer`` from the ``trainer`` config; a preset this machine cannot run (no
    GPU, too few devices, an unknown strategy) is a :class:`ConfigError`."""
    try:
        return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, MisconfigurationException | ValueError | RuntimeError):
            raise ConfigError(
                f"trainer: {' '.join(str(cause).split())}; pick a trainer preset this machine "
                "can run (trainer=cpu, trainer=gpu, trainer=ddp) or fix the trainer.* settings"
            ) from err
        raise


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    """The checkpoint to resume from, read once before any work so that a missing, truncated
    or foreign file is one line naming it and the checkpoints beside it, not Lightning's
    traceback inside ``fit``."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        last = Path(output_dir) / "checkpoints" / "last.ckpt"
        if not last.exists():
            raise ConfigError(
                f"ckpt_path=last but {last} does not exist: resume by passing the "
                "old run's directory (hydra.run.dir=...) or a checkpoint path"
            )
        ckpt_path = str(last)
    # checked here for one clear error line; mapped, not read, since Lightning loads it again
    read_checkpoint(check_checkpoint_path(ckpt_path, "ckpt_path="), mmap=True)
    return ckpt_path


def prepare(cfg: DictConfig) -> tuple[Any, OVOModule, str | None]:
    """Data module, LightningModule (with ``init_from`` weights unless resuming) and the
    checkpoint to resume from, all checked before any training starts."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = datamodule_from_config(plain(cfg.data))
    module = build_module(cfg, datamodule)
    output_dir = cfg.paths.output_dir
    # a checkpoint holds weights + two AdamW moments (fp32); last, best and one being written
    weights = sum(p.numel() for p in module.parameters()) * 4
    check_writable(output_dir, need_bytes=3 * 3 * weights)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    if cfg.get("init_from") and ckpt_path is None:  # a resumed run has its own weights
        module.load_inherited_weights(load_supernet(cfg.init_from))
    return datamodule, module, ckpt_path


def train(cfg: DictConfig, extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Fit the supernet; returns the final metrics and where the artefacts are. A W&B run is
    closed however training ends (marked failed if it raised)."""
    failed = True
    try:
        summary = _fit(cfg, extra_callbacks)
        failed = False
        return summary
    finally:
        _finish_wandb(failed)


def _fit(cfg: DictConfig, extra_callbacks: list[Any] | None) -> dict[str, Any]:
    datamodule, module, ckpt_path = prepare(cfg)
    output_dir = cfg.paths.output_dir
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = instantiate_all(cfg.get("callbacks")) + list(extra_callbacks or [])
    callbacks = [supernet_summary(c) for c in callbacks]
    callbacks.append(RecordTraining(cfg))
    silence_lightning_tips()
    trainer = build_trainer(cfg, callbacks, loggers)
    global_batch = datamodule.batch_size * trainer.world_size * trainer.accumulate_grad_batches
    module.check_optimization(global_batch, int(trainer.max_epochs or 1))
    for lg in loggers:  # the full composed config makes runs comparable in W&B
        lg.log_hyperparams(plain(cfg))
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if cfg.get("test_after_fit"):
        trainer.test(module, datamodule=datamodule, ckpt_path="best")
    summary = summarize(trainer, module, output_dir)
    if trainer.is_global_zero and summary["panel"]:
        # the last validation panel, for sweep summaries (ovo.training.sweep) and scripts
        atomic_write_json(Path(output_dir) / "panel.json", {"panel": summary["panel"]})
    return summary


class _NoTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing [litlogger/litmodels]" advertisements."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


_NO_TIPS = _NoTips()


def silence_lightning_tips() -> None:
    """Filter Lightning's advertisements for its cloud loggers out of the log (idempotent; its
    other messages stay)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _NO_TIPS not in logger.filters:
            logger.addFilter(_NO_TIPS)


class SupernetSummary(RichModelSummary):
    """Lightning's rich model summary, with ovo's closed-form costs of the smallest and largest
    subnet in place of its FLOPs (which it counts by running an ``example_input_array``, which a
    supernet has no one of: it printed 0)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = pl_module.net
        space = net.space
        self._subnets = [
            (name, net.num_params(arch), net.num_macs(arch))
            for name, arch in (("smallest", space.min_arch), ("largest", space.max_arch))
        ]
        super().on_fit_start(trainer, pl_module)

    def summarize(  # type: ignore[override]
        self,
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        data = [(name, column) for name, column in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in data:
            table.add_column(name, justify="right" if name == "Params" else "left")
        for row in zip(*(column for _, column in data)):
            table.add_row(*row)
        lines = [
            f"[bold]Supernet params[/]: {format_count(total_parameters)} "
            f"({format_count(trainable_parameters)} trainable, {model_size:.1f} MB)",
            *(
                f"[bold]{name.capitalize()} subnet[/]: {format_count(params)} params, "
                f"{format_count(macs)} MACs per image"
                for name, params, macs in self._subnets
            ),
        ]
        console = get_console()
        console.print(table)
        console.print("\n".join(lines))


def supernet_summary(callback: Any) -> Any:
    """Lightning's own model summary callbacks (``callbacks.model_summary``) replaced by
    :class:`SupernetSummary` with the same depth; any other callback as it is."""
    if type(callback) in (ModelSummary, RichModelSummary):
        return SupernetSummary(callback._max_depth, **callback._summarize_kwargs)
    return callback


def summarize(trainer: L.Trainer, module: OVOModule, output_dir: str) -> dict[str, Any]:
    panel = getattr(module, "panel_results", {})
    ckpt = trainer.checkpoint_callback
    summary = {
        "output_dir": str(output_dir),
        "best_checkpoint": getattr(ckpt, "best_model_path", None) or None,
        "last_checkpoint": getattr(ckpt, "last_model_path", None) or None,
        "panel": panel,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
        "compiled": None,
    }
    compiled = module.net.compiled
    if compiled is not None:
        summary["compiled"] = {
            "graphs": compiled.graphs,
            "block_shapes": len(compiled.shapes),
            "recompile_limit": compiled.limit,
            "warmup_seconds": compiled.warmup_seconds,
        }
    _print_summary(summary)
    return summary


@rank_zero_only
def _print_summary(summary: dict[str, Any]) -> None:
    lines = []
    compiled = summary["compiled"]
    if compiled:
        warmup = compiled["warmup_seconds"]
        lines.append(
            f"compiled blocks: {compiled['graphs']} graphs for {compiled['block_shapes']} block "
            f"shapes (train + eval), "
            + (
                f"warm-up {warmup:.1f}s"
                if warmup is not None
                else "no warm-up (compile_options.warmup=false)"
            )
        )
    if summary["panel"]:
        lines.append("validation panel (inherited weights, top-1 / top-5):")
        for name, acc in summary["panel"].items():
            lines.append(f"  {name:12s} {100 * acc['acc1']:6.2f}%  {100 * acc['acc5']:6.2f}%")
        mean1 = sum(a["acc1"] for a in summary["panel"].values()) / len(summary["panel"])
        lines.append(f"  {'mean':12s} {100 * mean1:6.2f}%")
    outputs = {"outputs": summary["output_dir"]}
    if summary["best_checkpoint"]:
        outputs["best checkpoint"] = summary["best_checkpoint"]
    if summary["last_checkpoint"]:
        outputs["last checkpoint"] = summary["last_checkpoint"]
    print_outputs("ovo training finished", outputs, lines)


def _finish_wandb(failed: bool = False) -> None:
    # each multirun job must end its W&B run, or the next job logs into it; a failed one too
    # (as lightning-hydra-template does), or its run stays open and the next job joins it
    if "wandb" in sys.modules:
        import wandb  # already imported by a W&B logger, if any

        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)


def run(cfg: DictConfig) -> float | None:
    """Train; returns ``val/mean/acc1`` (what a Hydra sweeper optimises)."""
    hydra_ddp.install()
    is_child = os.environ.get("LOCAL_RANK", "0") != "0"  # a DDP rank started by Lightning
    try:
        summary = train(cfg)
    finally:
        if not is_child:
            hydra_ddp.reset_between_jobs()
    return summary["metrics"].get("val/mean/acc1")


main = hydra_command("train", run)
