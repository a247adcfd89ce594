"""Hydra multirun + Lightning's DDP subprocess launcher, made to work together.

Lightning starts ranks 1..N-1 by re-running the command line (``sys.argv``). Under a Hydra
multirun that command is the whole sweep (``-m a=1,2``), so every child would run every job
(Lightning issue 15737). :func:`install` replaces the child command with *this job* only: the
job's own overrides, in single-run mode, writing into the job's output directory. After each
job :func:`reset_between_jobs` tears the process group down and clears the rendezvous
variables, so the next job starts a fresh group on a fresh port.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd, to_absolute_path
from lightning.pytorch.strategies.launchers import subprocess_script

import __main__

_DDP_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def job_subprocess_cmd(local_rank: int) -> tuple[Sequence[str], str]:
    """The command that runs rank ``local_rank`` of the current Hydra job, and its cwd."""
    hydra_cfg = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hydra_cfg.overrides.task)
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",  # only rank 0 writes the job's .hydra/ files
    ]
    return command, get_original_cwd()


def install() -> None:
    """Make Lightning's subprocess launcher start children for the current job only."""
    subprocess_script._hydra_subprocess_cmd = job_subprocess_cmd


def reset_between_jobs() -> None:
    """Destroy the process group and clear rendezvous variables (the next job re-creates them)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key in _DDP_ENV:
        os.environ.pop(key, None)
