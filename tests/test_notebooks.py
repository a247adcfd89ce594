"""The end-to-end demo (``python -m ovo.demo``) and the notebooks that read its outputs."""

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ovo.commands import demo
from ovo.jobs import hydra_value

from helpers import REPO, run_cli

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# the smallest demo that still runs every stage: 1 epoch, 2 generations of 4 archs
TINY_DEMO = ["--epochs", "1", "--logger", "csv", "--population", "4", "--generations", "2"]
TINY_DEMO += ["--parents", "2", "--mutations", "1", "--crossovers", "1"]


def _demo(out: Path, *args: str, timeout: int = 900):
    # one torch thread: these tiny models gain nothing from more, and on a busy machine (a
    # parallel test run) 2 OpenMP threads spin-wait and run up to 5x slower than 1
    env = {"OMP_NUM_THREADS": "1"}
    return run_cli("ovo.demo", ["--out", str(out), *args], REPO, timeout=timeout, env=env)


def _assert_demo_outputs(out: Path) -> None:
    for rel in (
        "train/checkpoints/last.ckpt",
        "search/demo/results.json",
        "search/demo/best_arch.yaml",
        "search/demo/pareto.png",
        "evaluate/evaluation.csv",
        "model/model.safetensors",
        "model/config.json",
        "model/model.onnx",
        "model/model.pt2",
        "model/README.md",
    ):
        assert (out / rel).is_file(), rel
    rows = json.loads((out / "evaluate/evaluation.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["min", "max", "best_arch"]
    budget = json.loads((out / "search/demo/results.json").read_text())["constraints"]
    assert rows[0]["params"] <= rows[2]["params"] <= budget["params_max"] < rows[1]["params"]
    # the family stage: three members spread over the front (all of a smaller front)
    front = json.loads((out / "search/demo/front.json").read_text())["members"]
    family = json.loads((out / "family/family.json").read_text())["members"]
    assert len(family) == min(3, len(front))
    assert {m["name"] for m in family} <= {m["name"] for m in front}
    for m in family:
        assert (out / "family" / m["folder"] / "model.safetensors").is_file()
    assert (out / "family/elastic/slices.csv").is_file()


def test_notebooks_are_committed_without_outputs():
    assert [p.name for p in NOTEBOOKS] == ["01_subnet_grid.ipynb", "02_search_results.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.cells[0].cell_type == "markdown" and "make demo" in nb.cells[0].source
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{path.name}: clear the outputs before committing"
                assert cell.execution_count is None, f"{path.name}: clear the execution counts"


def test_demo_help():
    proc = run_cli("ovo.demo", ["--help"], REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--out", "--epochs", "--params-max", "--generations", "--population", "--logger"):
        assert flag in proc.stdout


def test_demo_refuses_to_overwrite_an_earlier_demo(tmp_path):
    (tmp_path / "train").mkdir()
    proc = _demo(tmp_path, timeout=60)
    assert proc.returncode != 0 and "--overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr and "=== train ===" not in proc.stdout


def test_demo_runs_the_four_commands_and_stops_at_a_failed_stage(tmp_path, monkeypatch, capsys):
    """The orchestration alone: each stage's command line, in order, with the real commands
    replaced by a stand-in that writes what the next stage and the summary read."""
    out = tmp_path / "d"
    calls = []
    fail = None  # the module whose stand-in exits with status 3

    def fake_run(cmd, env, check):
        module = cmd[2]
        calls.append((module, cmd[3:]))
        if module == "ovo.train":
            (out / "train/checkpoints").mkdir(parents=True)
            (out / "train/checkpoints/last.ckpt").write_bytes(b"")
        if module == "ovo.search":
            results = {"best": {"params": 5e5, "flops": 9e6, "val_acc1": 80.0}}
            results["constraints"] = {"params_max": 6e5}
            (out / "search/demo").mkdir(parents=True)
            (out / "search/demo/results.json").write_text(json.dumps(results))
            front = {
                "members": [{"name": f"f{i:02d}", "params": p} for i, p in enumerate((4, 1, 3, 2))]
            }
            (out / "search/demo/front.json").write_text(json.dumps(front))
        return subprocess.CompletedProcess(cmd, 3 if module == fail else 0)

    import ovo.jobs  # demo launches through ovo.jobs.launch

    monkeypatch.setattr(ovo.jobs.subprocess, "run", fake_run)
    assert demo.main(["--out", str(out), "--params-max", "0.6M", "--logger", "csv"]) == 0
    modules = ["ovo.train", "ovo.search", "ovo.evaluate", "ovo.export", "ovo.export"]
    assert [m for m, _ in calls] == modules
    args, family = dict(calls[:4]), calls[4][1]
    # three members spread over the front's params (cheapest, middle, largest)
    assert f"family={out}/search/demo" in family and "elastic=true" in family
    assert "family.budgets=[params:1,params:3,params:4]" in family
    assert (
        "strategy=nsga2" in args["ovo.search"] and "objectives=[acc,params]" in args["ovo.search"]
    )
    assert args["ovo.train"] == [
        "experiment=quickstart",
        f"hydra.run.dir={out}/train",
        "logger=csv",
    ]
    ckpt = f"ckpt_path={out}/train/checkpoints/last.ckpt"
    assert ckpt in args["ovo.search"] and "constraints.params_max=0.6M" in args["ovo.search"]
    assert f"paths.log_dir={out}" in args["ovo.search"] and "name=demo" in args["ovo.search"]
    assert "wandb.enabled=false" in args["ovo.search"]
    assert f"arch=[min,max,{out}/search/demo/best_arch.yaml]" in args["ovo.evaluate"]
    assert f"out_dir={out}/model" in args["ovo.export"]
    assert "format=[safetensors,pt2,onnx]" in args["ovo.export"]  # onnx, onnxscript: dev group
    assert f"search_result={out}/search/demo/results.json" in args["ovo.export"]  # the card
    summary = capsys.readouterr().out.split("ovo demo finished")[1]
    assert f"{out}/model" in summary and "0.500M params (budget 0.600M)" in summary

    calls.clear()
    fail = "ovo.search"
    assert demo.main(["--out", str(out), "--params-max", "0.6M", "--overwrite"]) == 3
    assert [m for m, _ in calls] == ["ovo.train", "ovo.search"]
    assert "stage 'search' failed with exit status 3" in capsys.readouterr().err


@pytest.mark.parametrize("path", ["/tmp/a-b/c.d", "my runs/x, 2", "it's/a=b", r"c:\x y", "a\\'b\\"])
def test_paths_reach_hydra_unchanged(path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (override,) = OverridesParser.create().parse_overrides([f"k={hydra_value(path)}"])
    assert override.value() == path
    arch = f"[min,{hydra_value(path)}]"
    (override,) = OverridesParser.create().parse_overrides([f"arch={arch}"])
    assert override.value() == ["min", path]


@pytest.mark.slow  # ~45 s on 2 cores, but ~90 s where Python may not write .pyc files
def test_demo_end_to_end_smoke(tmp_path):
    proc = _demo(tmp_path / "demo", *TINY_DEMO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_demo_outputs(tmp_path / "demo")
    summary = proc.stdout[proc.stdout.index("ovo demo finished") :]
    for stage in ("train", "search", "evaluate", "export", "family"):
        assert f"{stage} " in summary.split("wall time:")[1]


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = _demo(out, "--epochs", "3", "--logger", "csv")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_demo_outputs(demo_dir):
    _assert_demo_outputs(demo_dir)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_demo_outputs(demo_dir, notebook, monkeypatch):
    monkeypatch.setenv("OVO_DEMO_DIR", str(demo_dir))  # the kernel inherits the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as in _demo
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.parent)}},  # as Jupyter starts it
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on an error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot was drawn"
