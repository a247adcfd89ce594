"""What the commands that start from a trained supernet share (search, evaluate, export, rank,
latency): opening the checkpoint, the evaluation Fabric of the ``eval`` block, ``compile``, and
their W&B run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.fabric import Fabric
from omegaconf import DictConfig

from ovo.checkpoint import LoadedSupernet, load_supernet
from ovo.scoring import EvalSettings, make_fabric
from ovo.settings import CompileOptions, check_compile_mode, plain
from ovo.space import SearchSpace
from ovo.supernet.compile import CompiledBlocks
from ovo.supernet.model import SuperViT


def open_checkpoint(cfg: DictConfig) -> LoadedSupernet:
    """The trained supernet a checkpoint command names (``ckpt_path``); a ``space`` key, where
    the command has one, asserts the checkpoint's space."""
    expected = SearchSpace.from_dict(plain(cfg.space)) if cfg.get("space") else None
    return load_supernet(cfg.ckpt_path, expected_space=expected)


def eval_fabric(cfg: DictConfig) -> Fabric:
    """The launched Fabric of a command's ``eval`` block."""
    return make_fabric(EvalSettings.from_dict(cfg.get("eval")))


def compile_settings(cfg: DictConfig) -> tuple[str, CompileOptions]:
    """``compile`` and ``compile_options`` of a command, checked (before any work)."""
    mode = check_compile_mode(cfg.get("compile", "none"))
    return mode, CompileOptions.from_dict(cfg.get("compile_options"))


def compile_for_eval(
    net: SuperViT, cfg: DictConfig, fabric: Fabric, batch_size: int
) -> CompiledBlocks | None:
    """With ``compile=blocks``: the net's blocks compiled once per block shape (warmed up for
    evaluation under the Fabric's autocast if asked); ``None`` otherwise."""
    mode, opts = compile_settings(cfg)
    if mode == "none":
        return None
    compiled = net.compile_blocks(opts.backend, opts.mode)
    if opts.warmup:
        compiled.warm_up(net, batch_size, False, fabric.global_rank == 0, fabric.autocast)
    return compiled


def compile_line(compiled: CompiledBlocks | None) -> list[str]:
    """The summary line of a compiled run (none when not compiled)."""
    if compiled is None:
        return []
    warm = compiled.warmup_seconds
    return [
        f"compiled blocks: {compiled.graphs} graphs for {len(compiled.shapes)} block shapes"
        + (f", warm-up {warm:.1f}s" if warm is not None else "")
    ]


def open_wandb(cfg: DictConfig, out: Path, job_type: str) -> Any:
    """A W&B run for a checkpoint command (``cfg.wandb``: project, offline), logged under
    ``out``, named ``<job_type>-<cfg.name>``; ``None`` when ``cfg.wandb.enabled`` is false."""
    if not cfg.wandb.enabled:
        return None
    import wandb  # here: W&B is optional at run time (the lent GPU image has none; NOTES.md)

    return wandb.init(
        project=cfg.wandb.project,
        dir=str(out),
        job_type=job_type,
        name=f"{job_type}-{cfg.name}",
        config=plain(cfg),
        mode="offline" if cfg.wandb.offline else "online",
        reinit="finish_previous",  # e.g. a search in the same process as training
    )
