"""Latency tables per runtime: ``ovo.latency runtime=onnxruntime`` times exported parts in ONNX
Runtime and keys the table by runtime and provider; tables written before runtimes are torch
eager ones; ``constraints.latency_runtime`` refuses a table of another runtime; a runtime that
cannot time here is one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ovo.errors import ConfigError
from ovo.latency import LatencyTable, load_table
from ovo.search import Constraints, check_feasible
from ovo.space import Arch, SearchSpace
from ovo.supernet.config import ViTConfig
from ovo.supernet.costs import CostModel

from helpers import load_bench_script, run_module

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

CKPT = Path(__file__).parent / "fixtures" / "pre_refactor_465a06b" / "last.ckpt"
# the fixture checkpoint's space and model
MICRO = SearchSpace([16, 24], [1, 2], [1, 2], [1.0, 2.0], head_dim=8, name="micro")
MICRO_CFG = ViTConfig(img_size=32, patch_size=8, num_classes=10)
# one block shape, 16px: three small ONNX exports
ONE_SHAPE = [
    "space.name=one",
    "space.embed_dim=[16]",
    "space.depth=[1,2]",
    "space.num_heads=[1]",
    "space.mlp_ratio=[2.0]",
    "space.head_dim=8",
    "model.img_size=16",
    "model.patch_size=8",
    "model.num_classes=5",
]


def table_dict(runtime: str | None) -> dict:
    """A table of the fixture checkpoint's space and model (made-up numbers), timed in
    ``runtime`` (``None``: written before runtimes, no key)."""
    conditions = {
        "device": "cpu: test",
        "device_type": "cpu",
        "threads": 1,
        "dtype": "float32",
        "batch": 1,
        "tokens": MICRO_CFG.num_tokens,
        "space": MICRO.to_dict(),
        "model": {
            "img_size": 32,
            "patch_size": 8,
            "in_chans": 3,
            "num_classes": 10,
            "global_pool": "token",
            "head_dim": 8,
        },
    }
    if runtime is not None:
        provider = "CPUExecutionProvider" if runtime == "onnxruntime" else None
        conditions |= {"runtime": runtime, "provider": provider}
    blocks = {(e, h, m): 0.01 * e + 0.1 * h + 0.001 * m for e, h, m in MICRO.block_shapes()}
    table = LatencyTable(
        conditions,
        {e: 0.5 for e in MICRO.embed_dim},
        blocks,
        {e: 0.2 for e in MICRO.embed_dim},
    )
    return table.to_dict()


def write_table(tmp_path: Path, runtime: str | None) -> Path:
    path = tmp_path / f"table-{runtime}.json"
    path.write_text(json.dumps(table_dict(runtime)))
    return path


def one_error_line(code: int, err: str, needle: str) -> str:
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("ovo: error:")]
    assert len(lines) == 1 and needle in lines[0], err[-2000:]
    assert "Traceback" not in err
    return lines[0]


def written(root: Path) -> list[str]:
    """Files under ``root`` but Hydra's own records of the run."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"
    )


# ---- building a table in ONNX Runtime -----------------------------------------------------
def test_an_onnxruntime_table_is_keyed_by_runtime_and_predicts(tmp_path, capsys, monkeypatch):
    import onnxruntime

    from ovo.export import formats

    exported: list[str] = []
    write_onnx = formats.write_onnx

    def counting(program, x, path):
        exported.append(Path(path).stem)
        write_onnx(program, x, path)

    monkeypatch.setattr(formats, "write_onnx", counting)
    args = [*ONE_SHAPE, "runtime=onnxruntime", "repeats=3", "warmup=1", "rounds=2", "verify=1"]
    assert run_module("ovo.latency", [*args, f"hydra.run.dir={tmp_path}"]) == 0
    printed = capsys.readouterr().out
    data = json.loads((tmp_path / "latency_table.json").read_text())
    c = data["conditions"]
    assert c["runtime"] == "onnxruntime" and c["provider"] == "CPUExecutionProvider"
    assert c["onnxruntime"] == onnxruntime.__version__ and c["graph_optimization"] == "all"
    assert c["threads"] == torch.get_num_threads()
    # each part exported once (not once per round), the calibration subnets (depth 1 and 2),
    # then the verify subnet whole
    assert exported == [
        "block-16-1-32",
        "stem-16",
        "head-16",
        "calibration-model-0",
        "calibration-model-1",
        "model-0",
    ]
    cal = data["calibration"]
    assert [a["depth"] for a in cal["archs"]] == [1, 2] and cal["scale"] > 0
    assert min(cal["measured_ms"]) > 0 and "calibration on 2 whole subnets" in printed
    miss = sum(abs(p / m - 1) for p, m in zip(cal["parts_ms"], cal["measured_ms"])) / 2
    assert cal["sum_of_parts_miss"] == pytest.approx(miss) and cal["applied"] == (miss > 0.10)
    table = load_table(str(tmp_path / "latency_table.json"))
    assert table.runtime == "onnxruntime" and "onnxruntime (CPUExecutionProvider)" in (
        table.describe()
    )
    arch = Arch(16, (1, 1), (2.0, 2.0))
    assert table.predict(arch) > table.predict(Arch(16, (1,), (2.0,))) > 0
    verify = data["verify"]
    assert set(verify) >= {"mean_abs_error", "median_abs_error", "max_abs_error", "within_10pct"}
    assert verify["within_10pct"] in (0, 1) and verify["subnets"][0]["measured_ms"] > 0
    assert "exported, in onnxruntime" in printed and "within 10%" in printed
    assert f"predicted: {table.predict(Arch(16, (1,), (2.0,))):.3g} ms (fastest arch)" in printed
    assert table.conditions.measuring().runtime == "onnxruntime"
    assert table.conditions.measuring().provider == "CPUExecutionProvider"


# ---- calibration: the sum of parts mapped to whole-model time --------------------------------
def test_calibration_line_is_least_squares_and_increasing():
    from ovo.latency.calibration import fit_calibration

    scale, offset = fit_calibration([1.0, 2.0, 4.0], [2.5, 4.5, 8.5])  # exactly 2x + 0.5
    assert scale == pytest.approx(2.0, rel=1e-12) and offset == pytest.approx(0.5, rel=1e-12)
    # a decreasing fit would reorder subnets: through the origin instead
    scale, offset = fit_calibration([1.0, 2.0], [3.0, 2.0])
    assert offset == 0.0 and scale == pytest.approx((3.0 + 4.0) / 5.0)
    assert fit_calibration([2.0], [1.0]) == (0.5, 0.0)


def test_a_calibrated_table_predicts_through_its_line(tmp_path):
    from ovo.latency.calibration import calibration_archs

    data = table_dict("onnxruntime")
    plain = LatencyTable.from_dict(data)
    arch = Arch(24, (2, 1), (2.0, 1.0))
    assert plain.calibration is None and plain.predict(arch) == plain.sum_of_parts(arch)
    assert "calibration" not in plain.to_dict()  # old tables hash as before
    data["calibration"] = {"scale": 0.7, "offset_ms": -0.25, "archs": [], "applied": True}
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data))
    table = load_table(str(path))
    assert table.predict(arch) == pytest.approx(0.7 * plain.predict(arch) - 0.25, rel=1e-12)
    assert table.fastest_arch(MICRO) == plain.fastest_arch(MICRO)
    # a line fitted but not applied (the plain sum was within 10% of the whole subnets)
    kept = LatencyTable.from_dict(data | {"calibration": data["calibration"] | {"applied": False}})
    assert kept.predict(arch) == plain.predict(arch)
    # written and read back, a calibrated table is the same value with the same fingerprint
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again == table and again.fingerprint() == table.fingerprint()
    data["calibration"]["scale"] = -1.0
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="damaged latency table"):
        LatencyTable.from_dict(data, str(path))
    # whether the line is used is recorded, never guessed
    unsaid = {k: v for k, v in data["calibration"].items() if k != "applied"} | {"scale": 0.7}
    with pytest.raises(ConfigError, match="damaged latency table"):
        LatencyTable.from_dict(data | {"calibration": unsaid}, str(path))
    nano = SearchSpace([64, 96, 128], [4, 5, 6], [2, 3, 4], [2.0, 3.0, 4.0])
    assert calibration_archs(nano, 3) == [
        nano.min_arch,
        Arch.uniform(96, 5, 3, 3.0),
        nano.max_arch,
    ]


# ---- tables before runtimes ------------------------------------------------------------------
def test_tables_written_before_runtimes_load_as_torch_eager(tmp_path):
    old = load_table(str(write_table(tmp_path, None)))
    assert (
        "runtime" not in old.conditions.to_dict()
    )  # read as written: its fingerprint is unchanged
    assert old.runtime == "torch" and old.provider is None
    assert "onnxruntime" not in old.describe()
    assert (
        old.conditions.measuring().runtime == "torch" and old.conditions.measuring().threads is None
    )
    old.check_matches(MICRO, MICRO_CFG, 8, runtime="torch")
    with pytest.raises(ConfigError, match="was timed in torch, not in onnxruntime"):
        old.check_matches(MICRO, MICRO_CFG, 8, runtime="onnxruntime")
    ort = load_table(str(write_table(tmp_path, "onnxruntime")))
    assert ort.runtime == "onnxruntime" and ort.conditions.measuring().threads == 1
    ort.check_matches(MICRO, MICRO_CFG, 8)  # no runtime required: any
    with pytest.raises(ConfigError, match="was timed in onnxruntime, not in torch"):
        ort.check_matches(MICRO, MICRO_CFG, 8, runtime="torch")


def test_the_runtime_constraint(tmp_path):
    cost = CostModel(MICRO_CFG, 8)
    old, ort = write_table(tmp_path, None), write_table(tmp_path, "onnxruntime")
    for table, runtime in ((old, None), (old, "torch"), (ort, None), (ort, "onnxruntime")):
        c = Constraints(latency_ms_max=50.0, latency_table=str(table), latency_runtime=runtime)
        assert c.table.predict(check_feasible(MICRO, cost, c)) <= 50.0
    for table, runtime in ((old, "onnxruntime"), (ort, "torch")):
        c = Constraints(latency_ms_max=50.0, latency_table=str(table), latency_runtime=runtime)
        with pytest.raises(ConfigError, match=f"not in {runtime}"):
            check_feasible(MICRO, cost, c)
    # unset, the key stays out of the settings (search states written before it still resume)
    assert (
        "latency_runtime" not in Constraints(latency_ms_max=5.0, latency_table=str(old)).to_dict()
    )
    c = Constraints(latency_ms_max=5.0, latency_table=str(ort), latency_runtime="onnxruntime")
    assert c.to_dict()["latency_runtime"] == "onnxruntime"
    assert "in onnxruntime <= 5 ms" in c.describe()
    with pytest.raises(ConfigError, match="latency_runtime=tensorrt"):
        Constraints(latency_ms_max=5.0, latency_table=str(ort), latency_runtime="tensorrt")
    with pytest.raises(ConfigError, match="latency_ms_max is not"):
        Constraints(latency_runtime="torch")


@pytest.mark.parametrize(
    "table_runtime,required,needle",
    [
        ("onnxruntime", "torch", "was timed in onnxruntime, not in torch"),
        (None, "onnxruntime", "was timed in torch, not in onnxruntime"),
        ("onnxruntime", "tensorrt", "constraints.latency_runtime=tensorrt"),
    ],
)
def test_search_refuses_a_table_of_another_runtime(
    table_runtime, required, needle, tmp_path, capsys
):
    table = write_table(tmp_path, table_runtime)
    run_dir = tmp_path / "search"
    args = [
        f"ckpt_path={CKPT}",
        f"hydra.run.dir={run_dir}",
        "wandb.enabled=false",
        "constraints.latency_ms_max=50",
        f"constraints.latency_table={table}",
        f"constraints.latency_runtime={required}",
    ]
    one_error_line(run_module("ovo.search", args), capsys.readouterr().err, needle)
    assert written(run_dir) == []


def test_a_search_under_an_onnxruntime_table_measures_its_best_arch_there(
    tmp_path, capsys, monkeypatch
):
    from ovo.export import formats
    from ovo.latency import device_name

    data = table_dict("onnxruntime")  # made-up numbers, "measured" on this machine
    data["conditions"] |= {"device": device_name(torch.device("cpu"))}
    data["conditions"] |= {"threads": torch.get_num_threads()}
    table = tmp_path / "table.json"
    table.write_text(json.dumps(data))
    exported: list[str] = []
    write_onnx = formats.write_onnx
    monkeypatch.setattr(
        formats,
        "write_onnx",
        lambda p, x, path: (exported.append(path.stem), write_onnx(p, x, path)),
    )
    args = [
        f"ckpt_path={CKPT}",
        f"hydra.run.dir={tmp_path / 'search'}",
        "wandb.enabled=false",
        "constraints.latency_ms_max=50",
        f"constraints.latency_table={table}",
        "constraints.latency_runtime=onnxruntime",
        *["population=4", "generations=1", "parents=2", "mutations=1", "crossovers=1"],
    ]
    assert run_module("ovo.search", args) == 0
    results = json.loads((tmp_path / "search" / "results.json").read_text())
    assert results["constraints"]["latency_runtime"] == "onnxruntime"
    assert results["latency_table"]["runtime"] == "onnxruntime"
    assert results["best"]["latency_ms_measured"] > 0 and exported == ["model-0"]
    assert "ms measured here" in capsys.readouterr().out


# ---- runtimes that cannot time here --------------------------------------------------------
@pytest.mark.parametrize(
    "extra,needle",
    [
        (["runtime=tensorrt"], "runtime=tensorrt is not a runtime ovo can time in"),
        (["runtime=onnxruntime", "provider=NoSuchExecutionProvider"], "is not in this onnxruntime"),
        (["runtime=onnxruntime", "dtype=bfloat16"], "use dtype=float32"),
        (["provider=CPUExecutionProvider"], "provider= is for runtime=onnxruntime"),
    ],
)
def test_a_runtime_that_cannot_time_here_is_one_line(extra, needle, tmp_path, capsys):
    code = run_module("ovo.latency", [*ONE_SHAPE, *extra, f"hydra.run.dir={tmp_path}"])
    one_error_line(code, capsys.readouterr().err, needle)
    assert written(tmp_path) == []


def test_without_onnxruntime_the_runtime_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    code = run_module(
        "ovo.latency", [*ONE_SHAPE, "runtime=onnxruntime", f"hydra.run.dir={tmp_path}"]
    )
    one_error_line(code, capsys.readouterr().err, "needs the onnxruntime package")
    assert written(tmp_path) == []


# ---- the validation benchmark ---------------------------------------------------------------
@pytest.mark.slow  # 10 to 40 s on 2 shared cores: nine small ONNX exports, four tables
def test_the_runtime_latency_benchmark_runs(tmp_path, capsys, monkeypatch):

    from ovo.export import formats

    exported: list[str] = []
    write_onnx = formats.write_onnx
    monkeypatch.setattr(
        formats,
        "write_onnx",
        lambda p, x, path: (exported.append(path.stem), write_onnx(p, x, path)),
    )
    bench = load_bench_script("latency_runtimes.py", "latency_runtimes")
    report = bench.main(["--quick", "--out", str(tmp_path)])
    rows = {(r["runtime"], r["batch"]): r for r in report["rows"]}
    assert set(rows) == {(r, b) for r in ("torch", "onnxruntime") for b in (1, 4)}
    for (runtime, batch), row in rows.items():
        assert row["conditions"]["runtime"] == runtime and row["conditions"]["batch"] == batch
        assert len(row["subnets"]) == 3 and row["error"]["max_abs_error"] >= 0
        assert all(m > 0 for s in row["subnets"] for m in s["measured_ms"])
    # each part and subnet exported once, shared by both batch sizes and both timings: two
    # blocks, stem, head, three validation subnets, two calibration subnets (depth 1 and 2)
    assert sorted(exported) == sorted(p.stem for p in tmp_path.glob("onnx/*/*.onnx"))
    assert len(exported) == 2 + 1 + 1 + 3 + 2
    assert "| onnxruntime (CPUExecutionProvider) | 4 |" in capsys.readouterr().out
