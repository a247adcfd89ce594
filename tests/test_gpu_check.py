"""`make gpu-check` (bench/gpu_check.py) without a GPU: every stage and row at toy sizes on the
CPU (the smoke run), the budget (stages most valuable first, what does not fit recorded as not
run), the few files that come back, the stage list, the travel-size check."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, load_bench_script


def load_gpu_check():
    return load_bench_script("gpu_check.py", "gpu_check")


def test_smoke_runs_every_stage_and_row_on_the_cpu(tmp_path):
    gpu_check = load_gpu_check()
    out = tmp_path / "check"
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--smoke", "--stages", "all", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # what comes back from a device call: a few plain files directly in the folder
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.json", "gpu_check.log", "summary.json", "summary.md"]
    assert all((out / f).is_file() for f in files) and len(files) <= gpu_check.MAX_FILES
    summary = json.loads((out / "summary.json").read_text())
    stages = summary["stages"]
    assert list(stages) == list(gpu_check.STAGES)
    for s in stages.values():  # each ran, was timed, and ended within its limit
        assert s["state"] == "ok" and 0 < s["seconds"] <= s["limit_s"] <= s["share_s"], s
    assert summary["wall_s"] <= summary["budget_s"]
    assert summary["env"]["torch"] and summary["panel"]  # versions read, the panel read back
    # every check has its row, the anchor's included, and a state
    checks = {c["check"]: c for c in summary["checks"]}
    labels = [c.label for c in gpu_check.CHECKS] + ["every CUDA test case that ran passes"]
    assert list(checks) == labels
    for c in gpu_check.CHECKS:
        line = checks[c.label]
        if c.label.startswith("peak memory"):  # a toy step may allocate nothing new
            assert line["state"] in ("met", "not met") or "measured nothing" in line["why"]
            continue
        assert line["value"] is not None and line["value"] > 0, line
        assert line["state"] == ("reported" if not c.target else line["state"]), line
        assert line["state"] in ("met", "not met", "reported"), line
    anchor = [line for label, line in checks.items() if label.startswith("anchor fwd+bwd")]
    assert len(anchor) == 4 and all(line["unit"] == "img/s" for line in anchor)
    tests = checks["every CUDA test case that ran passes"]
    collected = int(re.search(r"(\d+) cases collected", tests["why"]).group(1))
    assert tests["state"] == "not run" and collected >= 9
    # the bench rows behind the checks, tagged with the stage that measured them
    bench = json.loads((out / "bench.json").read_text())
    assert {r["stage"] for r in bench["rows"]} == {"bench", "compile", "anchor"}
    md = (out / "summary.md").read_text()
    assert all(f"| {label} |" in md for label in labels)
    log = (out / "gpu_check.log").read_text()
    assert "[gpu-check] python" in log and "[gpu-check] summary" in log
    assert all(f"[{name}] " in log for name in ("bench", "compile", "anchor", "tests"))


class FakeStages:
    """Child stages that take given seconds of a fake clock (killed at their limit)."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.now, self.seconds, self.limits = 0.0, seconds, {}

    def clock(self) -> float:
        return self.now

    def execute(self, stage, limit: float) -> tuple[int, list[str]]:
        self.limits[stage.name] = limit
        took = self.seconds[stage.name]
        self.now += min(took, limit)
        if stage.name == "tests":
            lines = [
                "collected 397 items / 388 deselected / 9 selected",
                "tests/test_grads.py::test_a[cuda] PASSED                 [ 11%]",
                "tests/test_grads.py::test_b[cuda] FAILED                 [ 22%]",
                "tests/test_devices.py::test_c[cuda] SKIPPED (no)         [ 33%]",
            ]
            return (124 if took > limit else 1), lines
        return (124 if took > limit else 0), []


def fake_run(gpu_check, monkeypatch, tmp_path, budget: float, seconds: dict[str, float]):
    monkeypatch.setattr(gpu_check, "stage_env", lambda log, smoke: {"torch": "x", "gpu": "fake"})
    fake = FakeStages(seconds)
    args = argparse.Namespace(stages=["core"], budget=budget, out=str(tmp_path), smoke=False)
    return gpu_check.run(args, clock=fake.clock, execute=fake.execute), fake


def test_budget_runs_most_valuable_first_and_records_what_did_not_fit(monkeypatch, tmp_path):
    gpu_check = load_gpu_check()
    summary, fake = fake_run(
        gpu_check,
        monkeypatch,
        tmp_path,
        300,
        {"bench": 100, "compile": 500, "anchor": 10, "tests": 10},
    )
    st = summary["stages"]
    # bench gets its share; compile its share (and no more: the later stages reserve theirs),
    # runs out and is killed at it
    assert fake.limits["bench"] == 120 and fake.limits["compile"] == 180
    assert st["bench"]["state"] == "ok" and st["bench"]["seconds"] == 100
    assert st["compile"]["state"] == "timeout" and st["compile"]["seconds"] == 180
    # 20 s left: the anchor (min 30 s) is not started, the tests (min 20 s) are
    assert st["anchor"]["state"] == "not run" and "anchor" not in fake.limits
    assert st["anchor"]["why"] == "needs >= 30 s, 20 s of the budget left"
    assert fake.limits["tests"] == 20 and st["tests"]["state"] == "failed"
    checks = {c["check"]: c for c in summary["checks"]}
    anchor = checks["anchor fwd+bwd img/s, ovo AutoFormer-T export, eager"]
    assert anchor["state"] == "not run" and "stage anchor not run: needs >= 30 s" in anchor["why"]
    compiled = checks["compiled supernet step / eager static, tiny-mid"]
    assert compiled["state"] == "not run" and "timeout" in compiled["why"]
    tests = checks["every CUDA test case that ran passes"]
    assert tests["state"] == "not met" and tests["value"] == "1/2"
    assert "1 skipped, 6 not run" in tests["why"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bench.json",
        "gpu_check.log",
        "summary.json",
        "summary.md",
    ]
    assert (
        "| anchor | 80 | - | 0.0 | not run: needs >= 30 s" in (tmp_path / "summary.md").read_text()
    )


def test_unused_time_flows_to_the_next_stage(monkeypatch, tmp_path):
    gpu_check = load_gpu_check()
    summary, fake = fake_run(
        gpu_check, monkeypatch, tmp_path, 480, {"bench": 20, "compile": 1, "anchor": 1, "tests": 1}
    )
    # env took no time: bench may use env's share too; bench's 100 s unused go to compile
    assert fake.limits["bench"] == 140 and fake.limits["compile"] == 300
    assert all(s["limit_s"] is not None for s in summary["stages"].values())


def _gone(pid: int) -> bool:
    """No such process, or only its zombie left (killed, not yet reaped by init)."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" in status.read_text()
    except FileNotFoundError:
        return True


def test_a_stage_at_its_limit_is_killed_with_what_it_started(tmp_path):
    gpu_check = load_gpu_check()
    log = gpu_check.Log(tmp_path / "log")
    # a stage that starts a worker; both print their pid, then block for good
    code = (  # one write each: a pipe keeps small writes whole
        "import os, select; os.fork(); os.write(1, f'{os.getpid()}\\n'.encode()); "
        "select.select([], [], [])"
    )
    try:
        rc, lines = gpu_check.run_child([sys.executable, "-c", code], log, 3, dict(os.environ))
    finally:
        log.close()
    assert rc == 124
    pids = [int(ln) for ln in lines if ln.strip().isdigit()]
    assert len(pids) == 2 and all(_gone(pid) for pid in pids)
    assert "killed at its limit, 3 s" in (tmp_path / "log").read_text()


def test_pytest_lines_of_a_killed_run_count_every_selected_case():
    gpu_check = load_gpu_check()
    lines = [
        "collected 397 items / 388 deselected / 9 selected",
        "tests/test_grads.py::test_a[cuda] PASSED                 [ 11%]",
        "tests/test_grads.py::test_b[cuda] ERROR                  [ 22%]",
        "tests/test_compile.py::test_c[cuda] ",  # killed while it ran
    ]
    res = gpu_check.test_results(lines, smoke=False)
    assert (res["passed"], res["failed"], res["skipped"], res["not_run"]) == (1, 1, 0, 7)


def test_cuda_cases_run_fast_files_first_then_every_other_file():
    gpu_check = load_gpu_check()
    cmd = gpu_check.stage_command(gpu_check.STAGES["tests"], REPO, smoke=False)
    files = [a for a in cmd if a.startswith("tests")]
    assert files[:3] == list(gpu_check.FIRST_TESTS) and len(files) == len(set(files))
    assert "tests/test_gpu_check.py" in files and "tests" not in cmd  # a folder would re-sort
    assert cmd[cmd.index("pytest") + 1 : cmd.index("pytest") + 3] == ["-m", "cuda"]


def test_help_lists_the_stages_with_their_budgets(capsys):
    gpu_check = load_gpu_check()
    with pytest.raises(SystemExit):
        gpu_check.main(["--help"])
    text = capsys.readouterr().out
    for stage in gpu_check.STAGES.values():  # e.g. "  bench     120 s (min  45)  224px..."
        assert re.search(rf"^  {stage.name} +{stage.budget_s} s \(min +{stage.min_s}\)", text, re.M)
    core = sum(gpu_check.STAGES[n].budget_s for n in gpu_check.GROUPS["core"])
    assert core == gpu_check.DEFAULT_BUDGET == 480  # one 8-minute command


def test_pack_refuses_more_than_can_travel(monkeypatch, capsys):
    gpu_check = load_gpu_check()
    gpu_check.main(["--pack", "--stages", "env"])  # the working tree alone fits
    assert "total" in capsys.readouterr().out
    monkeypatch.setattr(gpu_check, "TRAVEL_LIMIT_MIB", 0.01)
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--pack", "--stages", "env"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ovo: error:") and "limit" in err[0]


def test_unknown_stage_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        load_gpu_check().main(["--pack", "--stages", "tpu"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("ovo: error: unknown stage 'tpu'")
