"""Files written by ovo before the glue refactor (commit 465a06b) still load and resume.

``fixtures/pre_refactor_465a06b/`` holds a checkpoint, a finished search's ``results.json`` and
state, and the state of the same search killed after its first generation, all written by that
commit's code (``make.sh`` there says how). The search state records the checkpoint's absolute
path, so the checkpoint is put back at that path for the resume test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ovo.checkpoint import load_supernet

from helpers import run_module

FIX = Path(__file__).parent / "fixtures" / "pre_refactor_465a06b"
RECORDED_CKPT = Path("/tmp/ovo-fixture-465a06b/train/checkpoints/last.ckpt")
SEARCH = [
    "population=6",
    "generations=3",
    "parents=2",
    "mutations=2",
    "crossovers=2",
    "wandb.enabled=false",
    "constraints.params_max=20k",
]


def test_old_checkpoint_loads_and_evaluates(tmp_path):
    loaded = load_supernet(FIX / "last.ckpt")
    assert loaded.space.name == "micro" and loaded.global_step == 2
    with torch.no_grad():
        logits = loaded.net(torch.randn(2, 3, 32, 32), loaded.space.max_arch)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    code = run_module(
        "ovo.evaluate",
        [f"ckpt_path={FIX / 'last.ckpt'}", "arch=[min,max]", f"hydra.run.dir={tmp_path}/ev"],
    )
    assert code == 0
    rows = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["min", "max"] and rows[0]["images"] == 32


def test_old_interrupted_search_resumes_to_the_old_uninterrupted_result(tmp_path):
    RECORDED_CKPT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIX / "last.ckpt", RECORDED_CKPT)
    run_dir = tmp_path / "search" / "interrupted"
    run_dir.mkdir(parents=True)
    shutil.copyfile(FIX / "search_state_interrupted.json", run_dir / "search_state.json")
    args = [f"ckpt_path={RECORDED_CKPT}", f"paths.log_dir={tmp_path}", "name=interrupted"]
    assert run_module("ovo.search", [*args, *SEARCH]) == 0
    resumed = json.loads((run_dir / "results.json").read_text())
    old = json.loads((FIX / "results_complete.json").read_text())

    def as_old(entries):  # the keys version 1 wrote (version 2 adds images and complete)
        return [{k: e[k] for k in old["evaluated"][0]} for e in entries]

    assert as_old(resumed["evaluated"]) == old["evaluated"]
    assert all(e["complete"] and e["images"] == 20 for e in resumed["evaluated"])
    assert resumed["best"]["arch"] == old["best"]["arch"]
    assert [
        {k: r[k] for k in h if k != "best"} for r, h in zip(resumed["history"], old["history"])
    ] == [{k: v for k, v in h.items() if k != "best"} for h in old["history"]]


def test_old_state_of_another_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    other = tmp_path / "moved.ckpt"
    shutil.copyfile(FIX / "last.ckpt", other)
    run_dir = tmp_path / "search" / "old"
    run_dir.mkdir(parents=True)
    state = run_dir / "search_state.json"
    shutil.copyfile(FIX / "search_state_complete.json", state)
    before = state.read_bytes()
    args = [f"ckpt_path={other}", f"paths.log_dir={tmp_path}", "name=old", *SEARCH]
    assert run_module("ovo.search", args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ovo: error:")]
    assert len(lines) == 1 and "other settings" in lines[0] and "checkpoint" in lines[0], err
    assert state.read_bytes() == before and not (run_dir / "results.json").exists()
