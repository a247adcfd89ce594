import json

import pytest
import torch

import ovo.training.ddp
import ovo.training.distill

from helpers import load_bench_script


def load_bench():
    """``bench/run.py`` as a module (it puts ``bench/`` on the path for its package)."""
    return load_bench_script("run.py", "bench_run")


def counting(monkeypatch, owner, name: str) -> list:
    """Replace ``owner.name`` by a wrapper that records each call; returns the record."""
    calls, real = [], getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def test_bench_quick_runs_every_row(tmp_path, monkeypatch):
    bench = load_bench()
    from ovo_bench import fixture

    built = []

    class CountedSuperViT(fixture.SuperViT):
        def __init__(self, *args, **kwargs):
            built.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(fixture, "SuperViT", CountedSuperViT)
    losses = counting(monkeypatch, ovo.training.distill, "step_losses")
    out = tmp_path / "bench.json"
    rows = bench.main(["--quick", "--device", "cpu", "--out", str(out)])
    # one setting, one shared supernet; a second only where a row compares two (the proxy's
    # autograd-slice one, the compiled one)
    assert len(built) == 3
    # every supernet OVO step (speed, memory, proxy) computes its loss with the one definition
    assert len(losses) > 0
    measures = {r.measure for r in rows}
    assert len(measures) == 23
    # the anchor: timm's stock vit_tiny (eager, compiled) beside ovo's export and supernet
    anchor = [r for r in rows if r.measure.startswith("anchor fwd+bwd img/s")]
    assert len(anchor) == 4 and all(r.unit == "img/s" and r.value > 0 for r in anchor)
    assert all(r.detail["tflop_s"] > 0 and r.detail["gmacs_per_img"] > 0 for r in anchor)
    data = json.loads(out.read_text())
    assert len(data["rows"]) == len(rows)
    for r in data["rows"]:
        if r["measure"].startswith("peak step memory"):
            # quick: measured in-process after other rows, so the allocator may already hold
            # the step's memory (the full run measures each step in a fresh process)
            assert r["value"] is None or r["value"] >= 0
            assert {"ovo_mb", "teacher_mb", "student_mb"} <= set(r["detail"])
        elif r["measure"].startswith(("extra ", "DDP step")):  # differences: any sign
            assert r["value"] is not None and abs(r["value"]) < 1e9, r
        else:
            assert r["value"] is None or r["value"] > 0, r
    assert next(r for r in rows if r.measure.startswith("closed-form")).value < 1000
    # the slicing-tax proxy (deterministic): in-place slice gradients allocate nothing beyond
    # the static models and launch fewer ops than autograd's slice backward
    value = {r.measure: r.value for r in rows}
    before, after = "before: autograd slices", "after: in place"
    assert value[f"extra MB allocated / step, {after}"] == pytest.approx(0.0, abs=0.01)
    assert value[f"extra MB allocated / step, {before}"] > 10
    assert value[f"extra ops / step, {after}"] < value[f"extra ops / step, {before}"]


def test_bench_ddp_times_the_strategy_all_reduce(tmp_path, monkeypatch):
    """The ovo_ddp row's data-parallel step averages the gradients with the function
    ``SupernetDDPStrategy`` calls (one process of the row, world size 1, in this process)."""
    load_bench()
    from ovo_bench import ddp

    calls = counting(monkeypatch, ovo.training.ddp, "average_gradients")
    out, threads = tmp_path / "seconds.json", torch.get_num_threads()
    try:
        ddp.child(0, 1, str(tmp_path / "init"), "ovo_ddp", "16px/p8/b2", True, 1, str(out))
    finally:
        torch.set_num_threads(threads)
    seconds = json.loads(out.read_text())
    assert seconds["parallel"] > 0 and seconds["plain"] > 0
    assert len(calls) == 2  # the parallel step of the warm-up pair and of the timed pair


def test_bench_threads_row_reports_every_condition_quiet_and_loaded(tmp_path):
    """The threading row at toy size (timings not checked): each condition over its phase's
    reference, with the spread, the raw seconds of every condition and the machine's load."""
    bench = load_bench()
    from ovo_bench import threads

    out = tmp_path / "bench.json"
    rows = bench.main(["--quick", "--device", "cpu", "--measures", "threads", "--out", str(out)])
    assert [(r.measure, r.target) for r in rows] == [
        ("step time, new / old threading (quiet)", "<= 1.05"),
        ("step time, omp1 / old threading (quiet)", ""),
        ("step time, old / omp1 threading (loaded)", ""),
        ("step time, new / omp1 threading (loaded)", "<= 1.2"),
    ]
    for r in rows:
        assert r.value > 0 and r.detail["min"] <= r.value <= r.detail["max"]
        for per_cond in r.detail["s_per_step"].values():
            assert len(per_cond) == 1 and per_cond[0] > 0  # one repeat
        assert set(r.detail["s_per_step"]) == set(threads.CONDITIONS)
        assert {"load_average", "busiest"} <= set(r.detail["before"])
        assert len(r.detail["others_cpus"]) == 3
    assert len(json.loads(out.read_text())["rows"]) == 4
