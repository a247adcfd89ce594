"""``python -m ovo.search`` with objectives, on the fixture checkpoint (micro space): the front's
files, a warm start for a second device that scores nothing again, ``results.json`` read back by
the card, the fault-injection callback, and every bad input in one line with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ovo.checkpoint import load_supernet
from ovo.latency import LatencyTable
from ovo.search.front import read_evaluations, read_front, read_front_members
from ovo.search.result import read_results, search_facts
from ovo.space import Arch

from helpers import run_cli, run_module

FIX = Path(__file__).parent / "fixtures" / "pre_refactor_465a06b"
CKPT = FIX / "last.ckpt"
SEARCH = ["population=6", "parents=2", "mutations=2", "crossovers=2", "wandb.enabled=false"]
SEARCH += ["constraints.params_max=20k"]
WRITTEN = ("results.json", "search_state.json", "evaluations.jsonl", "front.json")


def table_for(ckpt: Path, path: Path, scale: float, device: str) -> Path:
    """A latency table of the checkpoint's space and model (made-up numbers, ``scale`` x)."""
    loaded = load_supernet(ckpt)
    space, cfg = loaded.space, loaded.cfg
    blocks = {s: scale * (0.01 * s[0] + 0.1 * s[1] + 0.001 * s[2]) for s in space.block_shapes()}
    model = {k: getattr(cfg, k) for k in ("img_size", "patch_size", "in_chans", "num_classes")}
    conditions = {"device": device, "threads": 1, "dtype": "float32", "batch": 1}
    conditions |= {"tokens": cfg.num_tokens, "space": space.to_dict()}
    conditions["model"] = model | {"global_pool": cfg.global_pool, "head_dim": space.head_dim}
    stems = {e: scale * (0.5 + 0.001 * e) for e in space.embed_dim}
    table = LatencyTable(conditions, stems, blocks, {e: 0.2 * scale for e in space.embed_dim})
    path.write_text(json.dumps(table.to_dict()))
    return path


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """An nsga2 search over acc, latency (table "cpu: one") and params."""
    out = tmp_path_factory.mktemp("front")
    table = table_for(CKPT, out / "one.json", 1.0, "cpu: one")
    args = [f"ckpt_path={CKPT}", f"paths.log_dir={out}", *SEARCH, "strategy=nsga2"]
    args += ["objectives=[acc,latency,params]", f"constraints.latency_table={table}"]
    assert run_module("ovo.search", [*args, "generations=2", "name=a"]) == 0
    return out, out / "search" / "a", table


def test_the_front_files_of_a_search(first):
    out, run, table = first
    front = read_front(run)
    assert front.objectives == ("acc", "latency", "params") and front.members
    assert [m.arch for m in read_front_members(run / "front.csv")] == [
        m.arch for m in front.members
    ]
    assert front.final_split == "val" and front.final_hypervolume is not None
    assert all(m.final_acc1 is not None for m in front.members)  # each scored on val
    assert (run / "front.png").stat().st_size > 1000
    state = json.loads((run / "search_state.json").read_text())
    rows = read_evaluations(run / "evaluations.jsonl")
    assert [r["arch"].to_dict() for r in rows] == [e["arch"] for e in state["evaluated"]]
    assert all(r["latency_ms"] is not None and r["split"] == "search" for r in rows)
    report = read_results(run / "results.json")
    assert report.front == front and report.facts.scored_with["split_images"] == 20
    # the card reads a front member's accuracy through results.json's reader
    member = front.members[-1]
    facts = search_facts(run / "results.json", member.arch)
    assert facts["accuracy"]["acc1"] == member.final_acc1
    where = report.finalist(member.arch).source  # final[i] if among the top-k, else front fNN
    assert facts["accuracy"]["source"] == f"{run / 'results.json'}, {where}, val split"


def test_a_second_device_costs_no_score(first, capsys):
    out, run, _ = first
    other = table_for(CKPT, out / "two.json", 3.0, "cpu: two")
    args = [f"ckpt_path={CKPT}", f"paths.log_dir={out}", *SEARCH, "strategy=nsga2"]
    args += ["objectives=[acc,latency,params]", f"constraints.latency_table={other}"]
    assert run_module("ovo.search", [*args, "generations=1", f"warm_start={run}", "name=b"]) == 0
    capsys.readouterr()
    second = out / "search" / "b"
    results = json.loads((second / "results.json").read_text())
    earlier = json.loads((run / "search_state.json").read_text())["evaluated"]
    assert results["images_scored"] == 0 and results["history"][0]["num_new"] == 0
    assert results["warm_start"] == {"directory": str(run), "entries": len(earlier)}
    assert {json.dumps(e["arch"]) for e in results["evaluated"]} == {
        json.dumps(e["arch"]) for e in earlier
    }
    front = read_front(second)
    assert front.latency_table["device"] == "cpu: two"
    assert all(m.latency_ms == pytest.approx(3.0 * read_lat(out, m.arch)) for m in front.members)


def read_lat(out: Path, arch: Arch) -> float:
    return LatencyTable.from_dict(json.loads((out / "one.json").read_text())).predict(arch)


def _moved_weights(tmp_path: Path) -> Path:
    ckpt = torch.load(CKPT, weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.endswith("head.bias"))
    ckpt["state_dict"][key] = ckpt["state_dict"][key] + 1.0
    torch.save(ckpt, tmp_path / "other.ckpt")
    return tmp_path / "other.ckpt"


BAD = {
    "unknown objective": (["objectives=[acc,energy]"], "unknown objective 'energy'"),
    "four objectives": (["objectives=[acc,latency,params,macs]"], "has 4 objective(s)"),
    "no acc": (["objectives=[params,macs]"], "has no acc"),
    "latency without a table": (["objectives=[acc,latency]"], "needs a latency table"),
    "latency table of another space": (
        ["objectives=[acc,latency]", "constraints.latency_table={nano_table}"],
        "measured for space 'nano'",
    ),
    "halving with a front": (["strategy=nsga2", "fitness=halving"], "fitness=halving races"),
    "warm start from no search": (["warm_start={empty}"], "holds no search"),
    "warm start from another checkpoint": (
        ["warm_start={first}", "ckpt_path={other}"],
        "another checkpoint weights",
    ),
    "warm start from another split": (
        ["warm_start={first}", "data.search_per_class=1"],
        "another fitness split",
    ),
    "the old fault key": (["+fault.kill_after_generation=0"], "is gone"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_are_one_line_and_write_nothing(case, first, tmp_path, capsys):
    out, run, _ = first
    args, needle = BAD[case]
    nano = table_for(CKPT, tmp_path / "nano.json", 1.0, "cpu")
    data = json.loads(nano.read_text())
    data["conditions"]["space"] = {**data["conditions"]["space"], "name": "nano", "depth": [5, 6]}
    nano.write_text(json.dumps(data))
    (tmp_path / "empty").mkdir()
    fill = {"nano_table": nano, "empty": tmp_path / "empty", "first": run}
    if "{other}" in " ".join(args):
        fill["other"] = _moved_weights(tmp_path)
    args = [a.format(**fill) for a in args]
    base = [f"ckpt_path={CKPT}", f"paths.log_dir={tmp_path}", *SEARCH, "name=bad"]
    assert run_module("ovo.search", [*base, *args]) == 2, case
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ovo: error:")]
    assert len(lines) == 1 and needle in lines[0], (case, err[-2000:])
    assert "Traceback" not in err
    assert not any((tmp_path / "search" / "bad" / name).exists() for name in WRITTEN)


@pytest.mark.slow  # three searches in subprocesses
def test_killed_nsga2_command_resumes_to_the_uninterrupted_result(tmp_path):
    table = table_for(CKPT, tmp_path / "t.json", 1.0, "cpu: one")
    args = [f"ckpt_path={CKPT}", f"paths.log_dir={tmp_path}", *SEARCH, "strategy=nsga2"]
    args += ["objectives=[acc,latency]", f"constraints.latency_table={table}", "generations=3"]
    kill = [
        "+callbacks.fault._target_=ovo.training.faults.KillAfterGeneration",
        "+callbacks.fault.generation=0",
    ]
    proc = run_cli("ovo.search", [*args, "name=k", *kill], tmp_path)
    assert proc.returncode == -9, proc.stderr[-2000:]
    killed = tmp_path / "search" / "k"
    state = json.loads((killed / "search_state.json").read_text())
    assert state["generation"] == 0 and len(read_evaluations(killed / "evaluations.jsonl")) == 6
    for name in ("k", "s"):
        done = run_cli("ovo.search", [*args, f"name={name}"], tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    straight = tmp_path / "search" / "s"
    r, s = (json.loads((d / "results.json").read_text()) for d in (killed, straight))
    assert r["evaluated"] == s["evaluated"] and r["history"] == s["history"]
    assert r["front"]["members"] == s["front"]["members"]
    assert (killed / "evaluations.jsonl").read_text() == (
        straight / "evaluations.jsonl"
    ).read_text()
    shutil.rmtree(tmp_path / "search")
