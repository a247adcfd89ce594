import importlib.util
import json
import sys

from helpers import REPO


def test_bench_quick_runs_every_row(tmp_path):
    spec = importlib.util.spec_from_file_location("ovo_bench", REPO / "bench" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["ovo_bench"] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    rows = bench.main(["--quick", "--device", "cpu", "--out", str(out)])
    measures = {r.measure for r in rows}
    assert len(measures) == 15
    data = json.loads(out.read_text())
    assert len(data["rows"]) == len(rows)
    for r in data["rows"]:
        if r["measure"].startswith("peak step memory"):
            # quick: measured in-process after other rows, so the allocator may already hold
            # the step's memory (the full run measures each step in a fresh process)
            assert r["value"] >= 0 and {"ovo_mb", "teacher_mb", "student_mb"} <= set(r["detail"])
        elif r["measure"].startswith(("extra ", "DDP step")):  # differences: any sign
            assert r["value"] is not None and abs(r["value"]) < 1e9, r
        else:
            assert r["value"] is None or r["value"] > 0, r
    assert next(r for r in rows if r.measure.startswith("closed-form")).value < 1000
