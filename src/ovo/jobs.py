"""Resumable jobs: ``python -m ovo.<command>`` in a subprocess, each in its own run directory.

A :class:`Job` is a name (for progress lines), a command line, a run directory and an identity
(what the job is: a run directory that holds a job of another identity is refused, so a reused
name never mixes two experiments). What a run directory holds:

- ``job.json``: the identity, written before the job starts (jobs with an identity only);
- the job's log (``job.log_name``), appended to, so a resumed job keeps its history;
- ``done.json`` (``job.done_name``), written atomically when the command exits 0: the job's
  identity, command, wall time, threads and whether it resumed. A job whose ``done.json``
  exists is not run again.

A job with ``resume_file`` (e.g. ``checkpoints/last.ckpt``) that finds it there, unfinished,
runs again with ``resume_args`` (``ckpt_path=last``) added.

A :class:`Pool` runs jobs ``jobs`` at a time: on a machine with GPUs one GPU each, round-robin
over the visible ones; on CPU each gets ``threads_per_job`` torch threads (default: the cores
split evenly). Scoring what a job produced is the caller's business, after :meth:`Pool.run`.

:func:`python_module`, :func:`launch` and :func:`run_checked` are the launch/log helpers every
ovo subprocess goes through (``ovo.demo`` streams its stages with them; a measurement that must
run every time, like the latency bench, uses :func:`run_checked` without a pool).
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ovo.atomic import atomic_write_json
from ovo.errors import ConfigError, UserError

DONE = "done.json"
IDENTITY = "job.json"


class JobFailed(UserError):
    """A job's command exited non-zero (the message holds its log's tail)."""


_PLAIN = re.compile(r"[\w./:~+-]+")  # Hydra override values that need no quoting


def hydra_value(value: object) -> str:
    """``value`` as a Hydra override value: paths with spaces or commas get quoted."""
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    # Hydra keeps backslashes literal except those before a quote or the closing quote
    escaped = re.sub(r"(\\*)('|$)", lambda m: 2 * m[1] + ("\\'" if m[2] else ""), text)
    return f"'{escaped}'"


def python_module(module: str, *args: str) -> list[str]:
    """``python -m <module> <args>`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def launch(
    argv: Sequence[str], log: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[int, float]:
    """Run ``argv`` to the end: output appended to ``log`` (or streamed to this terminal when
    ``None``), ``env`` added to this process's environment, W&B offline unless the environment
    says otherwise. Returns (exit status, wall seconds)."""
    full = {**os.environ, **(env or {})}
    full.setdefault("WANDB_MODE", "offline")
    start = time.perf_counter()
    if log is None:
        rc = subprocess.run(list(argv), env=full, check=False).returncode
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            rc = subprocess.run(list(argv), stdout=f, stderr=subprocess.STDOUT, env=full).returncode
    return rc, time.perf_counter() - start


def run_checked(
    name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> float:
    """:func:`launch` with the output in ``log``; returns the wall seconds, raises
    :class:`JobFailed` with the log's tail when the command fails."""
    rc, seconds = launch(argv, log, env)
    if rc != 0:
        raise JobFailed(
            f"{name} failed with exit status {rc}; its log is {log}; fix it and run the same "
            "command again (finished jobs are kept). The log ends:\n" + log_tail(log)
        )
    return seconds


def log_tail(log: Path, lines: int = 15) -> str:
    """The last ``lines`` non-empty lines of a log ('' if it does not exist)."""
    if not log.is_file():
        return ""
    text = log.read_text(errors="replace").strip().splitlines()
    return "\n".join([line for line in text if line.strip()][-lines:])


def read_done(run_dir: Path, done_name: str = DONE) -> dict[str, Any] | None:
    """The ``done.json`` record in ``run_dir`` (a finished job), else ``None``."""
    path = Path(run_dir) / done_name
    return json.loads(path.read_text()) if path.is_file() else None


def started(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a job (finished or not): its ``job.json`` or ``done.json``."""
    return (Path(run_dir) / IDENTITY).is_file() or (Path(run_dir) / DONE).is_file()


def check_identity(
    run_dir: Path, identity: Mapping[str, Any], what: str, done_name: str = DONE
) -> None:
    """Refuse ``run_dir`` if its ``job.json``/``done.json`` records another identity (a key the
    record lacks, written by an older ovo, cannot be checked)."""
    for record in (Path(run_dir) / IDENTITY, Path(run_dir) / done_name):
        if not record.is_file():
            continue
        have = json.loads(record.read_text())
        changed = [k for k in identity if k in have and have[k] != identity[k]]
        if changed:
            raise ConfigError(
                f"{run_dir} holds {what} with another {', '.join(changed)}: this run directory "
                "belongs to another run; pass another name= (or delete it to start over)"
            )


def claim(run_dir: Path, identity: Mapping[str, Any], what: str) -> None:
    """:func:`check_identity`, then record ``identity`` in ``run_dir/job.json`` (a directory
    that holds several jobs, e.g. a ranking, is claimed as a whole this way)."""
    check_identity(run_dir, identity, what)
    atomic_write_json(Path(run_dir) / IDENTITY, dict(identity))


@dataclass(frozen=True)
class Job:
    """One command to run to completion in ``run_dir`` (see the module docstring)."""

    name: str
    argv: tuple[str, ...]
    run_dir: Path
    identity: Mapping[str, Any] | None = None  # None: the run directory is not checked
    log_name: str = "job.log"
    done_name: str = DONE
    resume_file: str | None = None  # relative to run_dir
    resume_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def done_file(self) -> Path:
        return self.run_dir / self.done_name

    @property
    def log(self) -> Path:
        return self.run_dir / self.log_name

    def done(self) -> dict[str, Any] | None:
        """The ``done.json`` record of a finished job, else ``None``."""
        return read_done(self.run_dir, self.done_name)

    def command(self) -> list[str]:
        """The command line, with ``resume_args`` when an interrupted run left its resume file."""
        if self.resume_file and (self.run_dir / self.resume_file).is_file():
            return [*self.argv, *self.resume_args]
        return list(self.argv)

    def check(self) -> None:
        """Refuse a run directory whose ``job.json``/``done.json`` records another identity."""
        if self.identity is not None:
            check_identity(self.run_dir, self.identity, f"a {self.name} job", self.done_name)


class Pool:
    """Runs jobs ``jobs`` at a time, one GPU each (round-robin over the visible GPUs) or
    ``threads_per_job`` CPU threads each; finished jobs are skipped, interrupted ones resume."""

    def __init__(
        self,
        jobs: int = 1,
        threads_per_job: int | None = None,
        tag: str = "jobs",
        echo: Callable[[str], None] | None = None,
        gpus: Sequence[str] | None = None,
    ) -> None:
        if jobs < 1:
            raise ConfigError(f"jobs={jobs} must be at least 1")
        if threads_per_job is not None and threads_per_job < 1:
            raise ConfigError(f"threads_per_job={threads_per_job} must be at least 1 or null")
        self.jobs = int(jobs)
        self.threads = int(threads_per_job or max(1, (os.cpu_count() or 1) // self.jobs))
        self.gpus = list(visible_gpus() if gpus is None else gpus)
        self.tag = tag
        self.echo = echo or (lambda line: print(line, flush=True))
        self._slots: queue.Queue[int] = queue.Queue()
        for slot in range(self.jobs):
            self._slots.put(slot)

    def check(self, jobs: Sequence[Job]) -> None:
        """Every job's identity, before anything is written or run."""
        for job in jobs:
            job.check()

    def run(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        """Each job's ``done.json`` record, in order; the first failure raises
        :class:`JobFailed` (jobs already finished keep their ``done.json``)."""
        self.check(jobs)
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = [pool.submit(self.run_one, job) for job in jobs]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def env(self, slot: int) -> dict[str, str]:
        env = {"OMP_NUM_THREADS": str(self.threads)}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return env

    def run_one(self, job: Job) -> dict[str, Any]:
        job.check()
        done = job.done()
        if done is not None:
            return done
        job.run_dir.mkdir(parents=True, exist_ok=True)
        if job.identity is not None:
            atomic_write_json(job.run_dir / IDENTITY, dict(job.identity))
        slot = self._slots.get()
        try:
            cmd = job.command()
            resumed = len(cmd) > len(job.argv)
            self.echo(f"[{self.tag}] {job.name}: {'resume' if resumed else 'start'}")
            seconds = run_checked(job.name, cmd, job.log, {**self.env(slot), **job.env})
        finally:
            self._slots.put(slot)
        record = {
            **dict(job.identity or {}),
            "job": job.name,
            "command": cmd,
            "wall_s": round(seconds, 1),
            "resumed": resumed,
            "threads": self.threads,
        }
        atomic_write_json(job.done_file, record)
        self.echo(f"[{self.tag}] {job.name}: done in {seconds / 60:.1f} min")
        return record


def visible_gpus() -> list[str]:
    """The GPUs this process may use, named as its ``CUDA_VISIBLE_DEVICES`` names them."""
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[:count] if visible else [str(i) for i in range(count)]
