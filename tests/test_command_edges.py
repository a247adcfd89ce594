"""What commands do at their edges: a corrupt checkpoint to resume from, a second search into a
busy run directory, more loader workers than cores, what a training prints (no Lightning tips,
the subnets' costs), W&B runs closed however a command ends, the budget checked once.

User errors end in one ``ovo: error:`` line, exit status 2, and write nothing (as in
``test_bad_inputs.py``). Commands run in-process exactly as ``python -m ovo.<command>``."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from ovo.checkpoint import load_supernet
from ovo.commands.rundir import LOCK_NAME
from ovo.commands.train import train
from ovo.errors import DataError

from helpers import FAST, compose_cfg, run_module

FIX = Path(__file__).parent / "fixtures" / "pre_refactor_465a06b"
TINY_SEARCH = ["population=4", "parents=2", "mutations=1", "crossovers=1", "generations=1"]


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but Hydra's own records of the run (``.hydra/``, ``*.log``)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"
    }


def _one_error_line(code: int, err: str) -> str:
    assert code == 2, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("ovo: error:")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture()
def ckpt(tmp_path):
    path = tmp_path / "trained" / "last.ckpt"
    path.parent.mkdir()
    shutil.copyfile(FIX / "last.ckpt", path)
    return path


def _search_args(ckpt: Path, log_dir: Path, name: str = "s") -> list[str]:
    return [f"ckpt_path={ckpt}", f"paths.log_dir={log_dir}", f"name={name}", *TINY_SEARCH]


# ---- a corrupt checkpoint to resume from ------------------------------------------------------
def test_resume_from_a_corrupt_last_ckpt_names_it_and_the_other_checkpoints(tmp_path, capsys):
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    whole = (FIX / "last.ckpt").read_bytes()
    (checkpoints / "last.ckpt").write_bytes(whole[: len(whole) // 2])  # killed while saving
    (checkpoints / "best-epoch001.ckpt").write_bytes(whole)
    before = _snapshot(run_dir)
    code = run_module("ovo.train", [*FAST, "ckpt_path=last", f"hydra.run.dir={run_dir}"])
    line = _one_error_line(code, capsys.readouterr().err)
    assert f"{checkpoints / 'last.ckpt'} is not a readable checkpoint" in line, line
    assert f"other checkpoints in {checkpoints}: best-epoch001.ckpt" in line, line
    assert _snapshot(run_dir) == before


def test_a_checkpoint_directory_is_said_to_be_one_with_the_file_to_pass(ckpt, tmp_path, capsys):
    run_dir = ckpt.parent.parent / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.move(ckpt, run_dir / "checkpoints" / "last.ckpt")
    code = run_module(
        "ovo.evaluate", [f"ckpt_path={run_dir}", "arch=max", f"hydra.run.dir={tmp_path}/ev"]
    )
    line = _one_error_line(code, capsys.readouterr().err)
    assert f"checkpoint {run_dir} is a directory; pass the .ckpt file inside, e.g. " in line
    assert line.endswith(f"e.g. {run_dir / 'checkpoints' / 'last.ckpt'}"), line


# ---- one search per run directory -------------------------------------------------------------
HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin (or kills us)
"""


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir / LOCK_NAME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_search_into_a_busy_run_directory_refuses(ckpt, tmp_path, capsys):
    run_dir = tmp_path / "search" / "s"
    holder = _hold_lock(run_dir)  # another search's process, mid-run
    try:
        before = _snapshot(tmp_path)
        code = run_module("ovo.search", [*_search_args(ckpt, tmp_path), "wandb.enabled=false"])
        line = _one_error_line(code, capsys.readouterr().err)
        assert f"{run_dir} is in use by another search run (pid {holder.pid})" in line, line
        assert _snapshot(tmp_path) == before  # no state, no results, the holder's lock kept
    finally:
        holder.communicate("")


def test_a_lock_left_by_a_killed_search_does_not_block_the_next(ckpt, tmp_path, capsys):
    run_dir = tmp_path / "search" / "s"
    holder = _hold_lock(run_dir)
    os.kill(holder.pid, signal.SIGKILL)  # a crashed run: no cleanup, its lock file stays
    holder.wait()
    assert (run_dir / LOCK_NAME).is_file()
    code = run_module("ovo.search", [*_search_args(ckpt, tmp_path), "wandb.enabled=false"])
    assert code == 0, capsys.readouterr().err[-3000:]
    assert (run_dir / "results.json").is_file()
    assert not (run_dir / LOCK_NAME).exists()  # a finished run leaves no lock behind


# ---- loader workers ---------------------------------------------------------------------------
def test_num_workers_above_the_cores_is_capped_and_said_once(monkeypatch, capsys):
    import ovo.data.base

    monkeypatch.setattr(ovo.data.base, "usable_cores", lambda: 2)
    loaded = load_supernet(FIX / "last.ckpt")
    assert loaded.datamodule({"num_workers": 2}).num_workers == 2
    assert "num_workers" not in capsys.readouterr().err
    dm = loaded.datamodule({"num_workers": 16})  # the checkpoint's big machine
    assert dm.num_workers == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "num_workers" in line]
    assert lines == [
        "ovo: data.num_workers=16 is more than the 2 CPU cores this process may use; "
        "using num_workers=2"
    ]


# ---- what every training prints ---------------------------------------------------------------
class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_training_prints_no_tips_and_the_subnets_costs_instead_of_zero_flops(tmp_path, capsys):
    records = _Records()
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
    for name in names:
        logging.getLogger(name).addHandler(records)
    try:
        args = [a for a in FAST if not a.startswith("callbacks.model_summary")]
        args += ["trainer.max_epochs=1", "+trainer.limit_train_batches=1"]
        summary = train(compose_cfg("train", args, tmp_path))
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(records)
    assert summary["last_checkpoint"]
    assert records.messages, "no Lightning messages seen: the test would pass vacuously"
    assert not [m for m in records.messages if "Tip:" in m or "litmodels" in m], records.messages
    out = capsys.readouterr().out
    assert "FLOPs" not in out, out
    net = load_supernet(summary["last_checkpoint"]).net
    from ovo.units import format_count

    for name, arch in (("Smallest", net.space.min_arch), ("Largest", net.space.max_arch)):
        params, macs = format_count(net.num_params(arch)), format_count(net.num_macs(arch))
        assert f"{name} subnet: {params} params, {macs} MACs per image" in out, out


# ---- W&B runs are closed however a command ends -----------------------------------------------
class _Fail(L.Callback):
    def on_train_batch_start(self, *args: object) -> None:
        raise RuntimeError("a bug mid-training")


def test_a_failed_training_closes_its_wandb_run(tmp_path):
    import wandb

    args = [a for a in FAST if not a.startswith("logger=")] + ["logger=wandb"]
    with pytest.raises(RuntimeError, match="a bug mid-training"):
        train(compose_cfg("train", args, tmp_path), extra_callbacks=[_Fail()])
    assert list(tmp_path.glob("wandb/offline-run-*")), "no W&B run was opened"
    assert wandb.run is None


def test_a_failed_search_closes_its_wandb_run(ckpt, tmp_path, monkeypatch, capsys):
    import wandb

    import ovo.commands.search

    def fail(self):
        raise DataError("the data went away mid-search")

    monkeypatch.setattr(ovo.commands.search.Search, "run", fail)
    code = run_module("ovo.search", [*_search_args(ckpt, tmp_path), "wandb.offline=true"])
    assert "the data went away" in _one_error_line(code, capsys.readouterr().err)
    assert list(tmp_path.glob("search/s/wandb/offline-run-*")), "no W&B run was opened"
    assert wandb.run is None


# ---- the budget is checked once per search ----------------------------------------------------
def test_a_search_checks_its_budget_once(ckpt, tmp_path, monkeypatch, capsys):
    import ovo.commands.search
    import ovo.search.loop
    from ovo.budget import check_feasible

    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return check_feasible(*args, **kwargs)

    monkeypatch.setattr(ovo.commands.search, "check_feasible", counted)
    monkeypatch.setattr(ovo.search.loop, "check_feasible", counted)
    args = [*_search_args(ckpt, tmp_path), "wandb.enabled=false", "constraints.params_max=20k"]
    code = run_module("ovo.search", args)
    assert code == 0, capsys.readouterr().err[-3000:]
    assert len(calls) == 1
