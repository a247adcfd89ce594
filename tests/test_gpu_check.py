"""`make gpu-check` (bench/gpu_check.py) without a GPU: every stage at toy sizes on the CPU
(the smoke run), the stage list with minutes, and the travel-size check."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from helpers import REPO, load_bench_script


def load_gpu_check():
    return load_bench_script("gpu_check.py", "gpu_check")


def test_smoke_runs_every_stage_on_the_cpu(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--smoke", "--stages", "all", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == ["env", "tests", "bench", "train"]
    assert all(s["rc"] == 0 for s in summary["stages"].values())
    assert summary["env"]["torch"] and summary["panel"]  # versions printed, the panel read back
    assert "[gpu-check] python" in proc.stdout and "panel:" in proc.stdout


def test_help_lists_the_stages_with_their_minutes(capsys):
    gpu_check = load_gpu_check()
    with pytest.raises(SystemExit):
        gpu_check.main(["--help"])
    text = capsys.readouterr().out
    for stage in gpu_check.STAGES.values():  # e.g. "  tests   ~4    the test suite's CUDA..."
        assert re.search(rf"^  {stage.name} +~{stage.minutes:g} ", text, re.M), stage.name


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
