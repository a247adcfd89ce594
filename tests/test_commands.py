"""search / evaluate / export on a small trained checkpoint, through the real entry points."""

import json

import pytest
import torch
import yaml

from ovo.checkpoint import load_supernet
from ovo.commands.train import train
from ovo.export import load_exported
from ovo.space import Arch

from helpers import FAST, compose_cfg, run_cli

SMALL_SEARCH = [
    "population=8",
    "generations=3",
    "parents=3",
    "mutations=3",
    "crossovers=3",
    "wandb.enabled=false",
]


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    train(compose_cfg("train", FAST + ["trainer.max_epochs=1"], out))
    return out / "checkpoints" / "last.ckpt"


def _search(ckpt, tmp_path, *args):
    return run_cli(
        "ovo.search",
        [f"ckpt_path={ckpt}", f"paths.log_dir={tmp_path}", *SMALL_SEARCH, *args],
        tmp_path,
    )


def test_search_writes_results_within_budget_and_resumes_to_the_same_result(ckpt, tmp_path):
    net = load_supernet(ckpt).net
    budget = (net.num_params(net.space.min_arch) + net.num_params(net.space.max_arch)) // 2
    proc = _search(ckpt, tmp_path, f"constraints.params_max={budget}", "name=s1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "search" / "s1"
    results = json.loads((out / "results.json").read_text())
    assert results["num_evaluated"] == len(results["evaluated"]) <= 8 * 3
    assert all(e["params"] <= budget for e in results["evaluated"])
    assert all(
        net.num_params(Arch.from_dict(e["arch"])) == e["params"] for e in results["evaluated"]
    )
    archs = [json.dumps(e["arch"], sort_keys=True) for e in results["evaluated"]]
    assert len(set(archs)) == len(archs)  # never evaluated twice
    best = Arch.from_yaml(out / "best_arch.yaml")
    assert best.to_dict() == results["best"]["arch"]
    assert (out / "pareto.png").stat().st_size > 1000
    assert "val_acc1" in results["final"][0] and results["fitness_split"].startswith("search")
    # the same command again finds the finished state and evaluates nothing new
    again = _search(ckpt, tmp_path, f"constraints.params_max={budget}", "name=s1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["evaluated"] == results["evaluated"]


def test_random_strategy_has_the_same_budget(ckpt, tmp_path):
    proc = _search(ckpt, tmp_path, "strategy=random", "name=r")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "search/r/results.json").read_text())
    assert results["strategy"] == "random" and results["num_evaluated"] == 8 * 3


def test_search_refuses_an_infeasible_budget_before_evaluating(ckpt, tmp_path):
    proc = _search(ckpt, tmp_path, "constraints.params_max=1000", "name=bad")
    assert proc.returncode == 2
    assert "no arch of space 'nano'" in proc.stderr and "widen" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "search/bad/search_state.json").exists()


def test_search_refuses_a_checkpoint_of_another_space(ckpt, tmp_path):
    proc = _search(ckpt, tmp_path, "+space=tiny", "name=other")
    assert proc.returncode == 2
    assert "trained on space 'nano'" in proc.stderr and "'tiny'" in proc.stderr


def test_evaluate_table(ckpt, tmp_path):
    proc = run_cli(
        "ovo.evaluate",
        [f"ckpt_path={ckpt}", "arch=[min,max,random:2]", f"hydra.run.dir={tmp_path}/ev"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "ev/evaluation.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["min", "max", "random000", "random001"]
    assert all(0 <= r["acc1"] <= r["acc5"] <= 100 and r["throughput_img_s"] > 0 for r in rows)
    assert rows[0]["params"] < rows[1]["params"] and rows[0]["images"] == 64
    assert "top-1" in proc.stdout


def test_export_round_trip_and_onnx_parity(ckpt, tmp_path):
    arch_file = tmp_path / "arch.yaml"
    net = load_supernet(ckpt).net
    arch = net.space.sample(__import__("random").Random(5))
    arch.to_yaml(arch_file)
    proc = run_cli(
        "ovo.export",
        [
            f"ckpt_path={ckpt}",
            f"arch={arch_file}",
            "onnx=true",
            f"out_dir={tmp_path}/model",
            f"hydra.run.dir={tmp_path}/run",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parity" in proc.stdout and "OK" in proc.stdout
    model = load_exported(tmp_path / "model")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x, arch), rtol=0, atol=1e-5)
    config = json.loads((tmp_path / "model/config.json").read_text())
    assert Arch.from_dict(config["arch"]) == arch and config["params"] == net.num_params(arch)
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "model/model.onnx"))
    got = session.run(None, {"images": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), model(x).detach(), rtol=0, atol=1e-4)
    assert yaml.safe_load(arch_file.read_text())["embed_dim"] == arch.embed_dim


def test_not_a_checkpoint_is_refused(tmp_path):
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint at all")
    proc = run_cli("ovo.evaluate", [f"ckpt_path={bogus}", f"hydra.run.dir={tmp_path}/ev"], tmp_path)
    assert proc.returncode == 2 and "is not a readable checkpoint" in proc.stderr
