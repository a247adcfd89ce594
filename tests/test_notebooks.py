"""The end-to-end demo (``python -m ovo.demo``) and the notebooks that read its outputs."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import REPO, run_cli

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# the smallest demo that still runs every stage: 1 epoch, 2 generations of 4 archs
TINY_DEMO = ["--epochs", "1", "--logger", "csv", "--population", "4", "--generations", "2"]
TINY_DEMO += ["--parents", "2", "--mutations", "1", "--crossovers", "1"]


def _demo(out: Path, *args: str, timeout: int = 900):
    return run_cli("ovo.demo", ["--out", str(out), *args], REPO, timeout=timeout)


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
    ):
        assert (out / rel).is_file(), rel
    rows = json.loads((out / "evaluate/evaluation.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["min", "max", "best_arch"]
    budget = json.loads((out / "search/demo/results.json").read_text())["constraints"]
    assert rows[0]["params"] <= rows[2]["params"] <= budget["params_max"] < rows[1]["params"]


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


def test_demo_end_to_end_smoke(tmp_path):
    proc = _demo(tmp_path / "demo", *TINY_DEMO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_demo_outputs(tmp_path / "demo")
    summary = proc.stdout[proc.stdout.index("ovo demo finished") :]
    for stage in ("train", "search", "evaluate", "export"):
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
