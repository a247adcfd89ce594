"""``python -m ovo.train [experiment=NAME] [overrides]``: train a supernet with online distillation."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ovo import hydra_ddp
from ovo.cli import check_writable, parse_arch_spec, to_plain, user_errors_exit
from ovo.errors import ConfigError
from ovo.module import OVOModule
from ovo.paths import conf_dir
from ovo.space import SearchSpace


def build_module(cfg: DictConfig, datamodule: Any) -> OVOModule:
    """The LightningModule, with model settings the config leaves null taken from the data."""
    model = to_plain(cfg.model)
    for key in ("img_size", "in_chans", "num_classes"):
        if model.get(key) is None:
            model[key] = int(getattr(datamodule, key))
    return OVOModule(
        space=to_plain(cfg.space),
        model=model,
        distill=to_plain(cfg.distill),
        optimizer=to_plain(cfg.optimizer),
        scheduler=to_plain(cfg.scheduler),
        mixup=to_plain(cfg.mixup),
        panel=to_plain(cfg.panel),
        label_smoothing=cfg.label_smoothing,
        seed=cfg.seed,
        arch_trace_path=cfg.get("arch_trace_path"),
        data=to_plain(cfg.data),
        fixed_arch=fixed_arch_config(cfg.get("fixed_arch"), to_plain(cfg.space)),
    )


def fixed_arch_config(spec: Any, space: dict[str, Any]) -> dict[str, Any] | None:
    """``fixed_arch`` as a plain mapping: any one-arch spec ``ovo.evaluate`` takes (``max``, an
    arch file such as a search's best_arch.yaml, an inline mapping)."""
    if spec is None:
        return None
    archs = parse_arch_spec(spec, SearchSpace.from_dict(space))
    if len(archs) != 1:
        raise ConfigError(f"fixed_arch={spec} names {len(archs)} archs; give exactly one")
    return next(iter(archs.values())).to_dict()


def instantiate_all(node: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a group like ``callbacks`` or ``logger``."""
    if not node:
        return []
    return [instantiate(v) for v in node.values() if isinstance(v, DictConfig) and "_target_" in v]


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        last = Path(output_dir) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise ConfigError(
                f"ckpt_path=last but {last} does not exist: resume by passing the "
                "old run's directory (hydra.run.dir=...) or a checkpoint path"
            )
        return str(last)
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist")
    return ckpt_path


def train(cfg: DictConfig, extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Fit the supernet; returns the final metrics and where the artefacts are."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    output_dir = cfg.paths.output_dir
    # a checkpoint holds weights + two AdamW moments (fp32); last, best and one being written
    weights = sum(p.numel() for p in module.parameters()) * 4
    check_writable(output_dir, need_bytes=3 * 3 * weights)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    loggers = instantiate_all(cfg.get("logger"))
    callbacks = instantiate_all(cfg.get("callbacks")) + list(extra_callbacks or [])
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:  # the full composed config makes runs comparable in W&B
        lg.log_hyperparams(to_plain(cfg))
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if cfg.get("test_after_fit"):
        trainer.test(module, datamodule=datamodule, ckpt_path="best")
    summary = summarize(trainer, module, output_dir)
    _finish_wandb()
    return summary


def summarize(trainer: L.Trainer, module: OVOModule, output_dir: str) -> dict[str, Any]:
    panel = getattr(module, "panel_results", {})
    ckpt = trainer.checkpoint_callback
    summary = {
        "output_dir": str(output_dir),
        "best_checkpoint": getattr(ckpt, "best_model_path", None) or None,
        "last_checkpoint": getattr(ckpt, "last_model_path", None) or None,
        "panel": panel,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
    }
    _print_summary(summary)
    return summary


@rank_zero_only
def _print_summary(summary: dict[str, Any]) -> None:
    lines = ["", "ovo training finished", f"  outputs:          {summary['output_dir']}"]
    if summary["best_checkpoint"]:
        lines.append(f"  best checkpoint:  {summary['best_checkpoint']}")
    if summary["last_checkpoint"]:
        lines.append(f"  last checkpoint:  {summary['last_checkpoint']}")
    if summary["panel"]:
        lines.append("  validation panel (inherited weights, top-1 / top-5):")
        for name, acc in summary["panel"].items():
            lines.append(f"    {name:12s} {100 * acc['acc1']:6.2f}%  {100 * acc['acc5']:6.2f}%")
        mean1 = sum(a["acc1"] for a in summary["panel"].values()) / len(summary["panel"])
        lines.append(f"    {'mean':12s} {100 * mean1:6.2f}%")
    print("\n".join(lines), flush=True)


def _finish_wandb() -> None:
    # each multirun job must end its W&B run, or the next job logs into it
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


@hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> float | None:
    OmegaConf.resolve(cfg)
    hydra_ddp.install()
    is_child = os.environ.get("LOCAL_RANK", "0") != "0"  # a DDP rank started by Lightning
    try:
        summary = train(cfg)
    finally:
        if not is_child:
            hydra_ddp.reset_between_jobs()
    return summary["metrics"].get("val/mean/acc1")


if __name__ == "__main__":
    main()
