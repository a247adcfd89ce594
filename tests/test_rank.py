"""Ranking fidelity (``ovo.rank``): statistics against scipy, the arch grammar's stratified and
band sets, ``init_from``, and the command end to end with resume."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import scipy.stats
import torch

from ovo import ranking
from ovo.archspec import parse_arch_spec
from ovo.checkpoint import load_supernet
from ovo.commands.export import PARITY_TOL
from ovo.commands.train import prepare, train
from ovo.errors import ConfigError, InfeasibleBudgetError
from ovo.export import export_subnet
from ovo.space import load_space
from ovo.supernet import CostModel, ViTConfig

from helpers import FAST, compose_cfg, run_module


# ---- statistics -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_tau_and_rho_equal_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, 12).astype(float)  # ties, as accuracies on a finite split have
    y = x + rng.integers(-3, 4, 12)
    assert ranking.kendall_tau_b(x, y) == pytest.approx(scipy.stats.kendalltau(x, y)[0], abs=1e-12)
    assert ranking.spearman_rho(x, y) == pytest.approx(scipy.stats.spearmanr(x, y)[0], abs=1e-12)


def test_tau_undefined_and_perfect():
    assert np.isnan(ranking.kendall_tau_b([1.0], [2.0]))
    assert np.isnan(ranking.kendall_tau_b([1, 1, 1], [1, 2, 3]))
    assert ranking.kendall_tau_b([1, 2, 3], [10, 20, 30]) == 1.0
    assert ranking.kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=20)
    y = x + rng.normal(scale=0.5, size=20)
    ci = ranking.bootstrap_ci(x, y, ranking.kendall_tau_b, resamples=500, seed=3)
    assert ci == ranking.bootstrap_ci(x, y, ranking.kendall_tau_b, resamples=500, seed=3)
    assert ci[0] < ranking.kendall_tau_b(x, y) < ci[1]


def test_top_k_overlap_and_bins():
    assert ranking.top_k_overlap([5, 4, 3, 2], [5, 3, 4, 1], 2) == 0.5
    assert ranking.top_k_overlap([5, 4, 3, 2], [1, 2, 3, 4], 2) == 0.0
    bins = ranking.binned_tau(
        [1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 7, 6, 5, 4], 2
    )
    assert [b["n"] for b in bins] == [4, 3]
    assert bins[0]["tau"] == pytest.approx(1.0) and bins[1]["tau"] == pytest.approx(-1.0)
    assert bins[0]["params_max"] == 4 and bins[1]["params_min"] == 5


# ---- the arch grammar: stratified and band -----------------------------------------------------
@pytest.fixture(scope="module")
def nano():
    space = load_space("nano")
    return space, CostModel(ViTConfig(img_size=32, patch_size=8, num_classes=10), space.head_dim)


def test_stratified_spreads_over_the_params_range(nano):
    space, cost = nano
    archs = parse_arch_spec("stratified:6", space, seed=1, cost=cost)
    lo, hi = cost.params(space.min_arch), cost.params(space.max_arch)
    width = (hi - lo) / 6
    params = [cost.params(a) for a in archs.values()]
    assert list(archs) == [f"strat{i:02d}" for i in range(6)] and len(set(archs.values())) == 6
    for i, p in enumerate(params):
        assert lo + i * width <= p <= lo + (i + 1) * width
    assert archs == parse_arch_spec("stratified:6", space, seed=1, cost=cost)
    assert archs != parse_arch_spec("stratified:6", space, seed=2, cost=cost)


def test_band_is_within_its_width(nano):
    space, cost = nano
    archs = parse_arch_spec(["band:10@0.6M:4%", "min"], space, cost=cost)
    band = [a for n, a in archs.items() if n.startswith("band")]
    assert len(set(band)) == 10 and "min" in archs
    assert all(0.6e6 * 0.96 <= cost.params(a) <= 0.6e6 * 1.04 for a in band)
    default = parse_arch_spec("band:3@0.6M", space, cost=cost)
    assert all(abs(cost.params(a) - 0.6e6) <= 0.05 * 0.6e6 for a in default.values())
    with pytest.raises(InfeasibleBudgetError, match="widen the band"):
        parse_arch_spec("band:5@0.1M:1%", space, cost=cost)
    with pytest.raises(ConfigError, match="again"):
        parse_arch_spec(["random:2", "random:3"], space, cost=cost)  # would share names
    for bad in ("band:3", "band:x@1M", "band:3@1M:2", "stratified:0"):
        with pytest.raises(ConfigError):
            parse_arch_spec(bad, space, cost=cost)
    with pytest.raises(ConfigError, match="need a trained supernet"):
        parse_arch_spec("band:3@0.6M", space)


# ---- init_from ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet")
    train(compose_cfg("train", [*FAST, "trainer.max_epochs=1", "model.drop_path_rate=0.1"], out))
    return out / "checkpoints" / "last.ckpt"


def test_init_from_starts_the_subnet_at_its_exported_weights(trained, tmp_path):
    source = load_supernet(trained)
    arch = source.space.sample(random.Random(3))
    arch_file = tmp_path / "arch.yaml"
    arch.to_yaml(arch_file)
    cfg = compose_cfg(
        "train",
        [
            *FAST,
            "distill=none",
            f"fixed_arch={arch_file}",
            f"init_from={trained}",
            "model.drop_path_rate=0.1",
        ],
        tmp_path / "run",
    )
    _, module, _ = prepare(cfg)
    x = torch.randn(4, 3, 32, 32)
    exported = export_subnet(source.net, arch).eval()
    with torch.no_grad():
        got, want = module.net.eval()(x, arch), exported(x)
    assert (got - want).abs().max() <= PARITY_TOL * max(want.abs().max(), 1.0)


def test_init_from_of_another_space_is_refused(trained, tmp_path, capsys):
    arch_file = tmp_path / "arch.yaml"
    load_space("tiny").max_arch.to_yaml(arch_file)
    args = [*FAST, "space=tiny", "distill=none", f"fixed_arch={arch_file}"]
    code = run_module("ovo.train", [*args, f"init_from={trained}", f"hydra.run.dir={tmp_path}/r"])
    err = capsys.readouterr().err
    assert code == 2 and "is not in the space 'nano' of init_from" in err, err[-2000:]
    assert not (tmp_path / "r" / "checkpoints").exists()


# ---- the command ----------------------------------------------------------------------------
def test_rank_end_to_end_and_resume(trained, tmp_path, capsys):
    args = [
        f"ckpt_path={trained}",
        f"paths.log_dir={tmp_path}",
        "name=r",
        "archs=[min,max,random:1]",
        "jobs=2",
        "finetune.epochs=1",
        "wandb.enabled=false",
        "bootstrap=200",
    ]
    assert run_module("ovo.rank", args) == 0
    out = tmp_path / "rank" / "r"
    result = json.loads((out / "ranking.json").read_text())
    rows = result["rows"]
    assert [r["name"] for r in rows] == ["min", "max", "random000"]
    inh = [r["inherited_acc1"] for r in rows]
    std = [r["standalone_acc1"] for r in rows]
    s = result["summary"]["inherited_vs_standalone"]
    want = scipy.stats.kendalltau(inh, std)[0]
    assert s["kendall_tau"] == pytest.approx(want) or (
        np.isnan(want) and np.isnan(s["kendall_tau"])
    )
    assert s["gap_mean"] == pytest.approx(np.mean(np.subtract(std, inh)))
    assert all(0 <= r["finetuned_acc1"] <= 100 for r in rows)
    assert (out / "ranking.png").stat().st_size > 1000
    dones = sorted(out.glob("*/*/**/done.json"))
    assert len(dones) == 6  # 3 standalone + 3 finetune trainings
    # the checkpoints the trainings wrote are where the rank run put them, nothing elsewhere
    assert all((d.parent / "checkpoints" / "last.ckpt").is_file() for d in dones)
    capsys.readouterr()

    # the same command again trains nothing; an interrupted training resumes from last.ckpt
    before = {d: d.read_bytes() for d in dones}
    (out / "standalone" / "max" / "seed0" / "done.json").unlink()
    assert run_module("ovo.rank", args) == 0
    printed = capsys.readouterr().out
    assert printed.count("[rank]") == 2 and "standalone max seed 0: start" in printed
    redone = json.loads((out / "standalone" / "max" / "seed0" / "done.json").read_text())
    assert redone["resumed"] and "ckpt_path=last" in redone["command"]
    assert all(
        d.read_bytes() == before[d] for d in before if d.exists() and "max/seed0" not in str(d)
    )

    # the same name with other archs is refused before anything is written or trained
    archs_file = out / "archs" / "random000.yaml"
    kept = archs_file.read_bytes()
    other = [a if not a.startswith("archs=") else "archs=[min,max,random:1]" for a in args]
    assert run_module("ovo.rank", [*other, "seed=5"]) == 2
    err = capsys.readouterr().err
    assert "another arch" in err and "name=" in err, err[-1500:]
    assert archs_file.read_bytes() == kept


def test_rank_refuses_bad_input(trained, tmp_path, capsys):
    base = [f"ckpt_path={trained}", f"paths.log_dir={tmp_path}", "wandb.enabled=false"]
    outside = tmp_path / "outside.yaml"
    load_space("tiny").max_arch.to_yaml(outside)
    for extra, needle in (
        (["jobs=0"], "jobs=0 must be at least 1"),
        ([f"archs=[min,{outside}]"], "not in space 'nano'"),
        (["+space=tiny"], "trained on space 'nano'"),
        (["archs=[min]"], "ranking needs 2+"),
        (["split=train"], "use val, test or search"),
    ):
        assert run_module("ovo.rank", [*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("ovo: error:")]
        assert len(lines) == 1 and needle in lines[0], (extra, err[-1500:])
    assert not list(tmp_path.rglob("done.json")) and not list(tmp_path.rglob("ranking.json"))
