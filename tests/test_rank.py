"""Ranking fidelity (``ovo.rank``): statistics, free baselines and the paired bootstrap against
scipy, the report as a pure function, the arch grammar's stratified and band sets and their
groups, ``init_from``, the command end to end with resume, the recipe-keyed standalone store
(a second supernet reuses it), known results (``standalone.results``) and a rank directory
written before ``ovo.jobs`` (reused, nothing trained)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from ovo.archspec import parse_arch_groups, parse_arch_spec
from ovo.checkpoint import load_supernet
from ovo.commands.export import PARITY_TOL
from ovo.commands.train import prepare, train
from ovo.errors import ConfigError, InfeasibleBudgetError
from ovo.export import export_subnet
from ovo.ranking import stats as ranking
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


def _tied_rows(seed: int, n: int = 14) -> list[dict]:
    """Rows with ties everywhere (params, MACs, depth, accuracies), two groups and two seeds."""
    rng = np.random.default_rng(seed)
    depth = rng.integers(1, 4, n)
    params = rng.integers(1, 5, n) * 1000 + 500 * depth
    rows = []
    for i in range(n):
        seeds = [float(a) for a in rng.integers(50, 56, 2)]
        rows.append(
            {
                "params": int(params[i]),
                "macs": int(params[i]) * 10 + int(rng.integers(0, 2)) * 1000,
                "depth": int(depth[i]),
                "group": "band" if i % 2 else "strat",
                "inherited_acc1": float(rng.integers(40, 46)),
                "standalone_acc1_per_seed": seeds,
                "standalone_acc1": float(np.mean(seeds)),
            }
        )
    return rows


def _tau(x, y) -> float:
    return scipy.stats.kendalltau(x, y)[0]  # tau-b


@pytest.mark.parametrize("seed", range(3))
def test_baselines_and_the_paired_bootstrap_equal_scipy_on_tied_data(seed):
    rows = _tied_rows(seed)
    out = ranking.compare_baselines(rows, range(len(rows)), resamples=300, seed=7)
    truth = np.array([r["standalone_acc1"] for r in rows])
    sup = np.array([r["inherited_acc1"] for r in rows])
    params = np.array([r["params"] for r in rows], dtype=float)
    depth = np.array([r["depth"] for r in rows], dtype=float)
    baselines = {
        "params": params,
        "macs": np.array([r["macs"] for r in rows], dtype=float),
        # by depth, ties broken by params: scipy on the lexicographic ranks of (depth, params)
        "depth": scipy.stats.rankdata(depth * 1e9 + params),
    }
    assert out["supernet"]["kendall_tau"] == pytest.approx(_tau(sup, truth), abs=1e-12)
    picks = np.random.default_rng(7).integers(0, len(rows), (300, len(rows)))
    assert (ranking.resample_indices(len(rows), 300, 7) == picks).all()
    for name, base in baselines.items():
        got = out[name]
        assert got["kendall_tau"] == pytest.approx(_tau(base, truth), abs=1e-12), name
        rho = scipy.stats.spearmanr(base, truth)[0]
        assert got["spearman_rho"] == pytest.approx(rho, abs=1e-12), name
        assert got["tau_gain"] == pytest.approx(_tau(sup, truth) - _tau(base, truth), abs=1e-12)
        # the same resampled archs for the supernet and the baseline (paired)
        diffs = [_tau(sup[p], truth[p]) - _tau(base[p], truth[p]) for p in picks]
        diffs = [d for d in diffs if not np.isnan(d)]
        want = np.percentile(diffs, [2.5, 97.5])
        assert got["tau_gain_ci95"] == pytest.approx(tuple(want), abs=1e-12), name
        lo, hi = want
        assert got["verdict"] == (
            "beats" if lo > 0 else "loses to" if hi < 0 else "not resolved against"
        )


def test_the_verdict_says_plainly_who_wins():
    rows = [
        {"params": p, "macs": p, "depth": d, "inherited_acc1": a, "standalone_acc1": t}
        for p, d, a, t in zip(range(1, 13), [1] * 6 + [2] * 6, range(12), range(12))
    ]
    out = ranking.compare_baselines(rows, range(12), resamples=200)
    assert out["params"]["tau_gain_ci95"] == (0, 0)  # the same ranking: never resolved
    assert out["params"]["verdict"] == "not resolved against"
    constant = [{**r, "standalone_acc1": 50.0} for r in rows]
    out = ranking.compare_baselines(constant, range(12), resamples=200)
    assert out["depth"]["verdict"] == "undefined against"  # no tau on a constant truth
    flipped = [{**r, "inherited_acc1": -r["inherited_acc1"]} for r in rows]
    out = ranking.compare_baselines(flipped, range(12), resamples=200)
    assert out["params"]["verdict"] == "loses to" and out["params"]["tau_gain_ci95"][1] < 0
    shuffled = [{**r, "params": 13 - r["params"], "macs": 13 - r["macs"]} for r in rows]
    out = ranking.compare_baselines(shuffled, range(12), resamples=200)
    assert out["params"]["verdict"] == "beats" and out["macs"]["tau_gain_ci95"][0] > 0


def test_the_report_is_a_pure_function_of_the_rows():
    rows = _tied_rows(0)
    rows[0]["group"] = "file"  # a group of one: no statistic
    s = ranking.report(rows, bins=3, top_k=3, resamples=100, seed=1)
    assert set(s["by_group"]) == {"band", "strat"} == set(s["baselines"]["by_group"])
    band = [i for i, r in enumerate(rows) if r["group"] == "band"]
    want = _tau(
        [rows[i]["inherited_acc1"] for i in band], [rows[i]["standalone_acc1"] for i in band]
    )
    assert s["by_group"]["band"]["kendall_tau"] == pytest.approx(want)
    assert s["baselines"]["by_group"]["band"]["supernet"]["kendall_tau"] == pytest.approx(want)
    assert [b["n"] for b in s["baselines"]["by_params_bin"]] == [5, 5, 4]
    first = [r["standalone_acc1_per_seed"][0] for r in rows]
    second = [r["standalone_acc1_per_seed"][1] for r in rows]
    ceiling = s["noise_ceiling"]["kendall_tau_seed0_vs_seed1"]
    assert ceiling == pytest.approx(_tau(first, second))
    assert s["standalone_wall_s_mean"] is None and "finetune" not in s
    json.dumps(ranking.json_safe(s), allow_nan=False)  # strict JSON


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


def test_arch_groups_come_from_the_spec_not_from_names(nano, tmp_path):
    space, cost = nano
    bandit = tmp_path / "bandit.yaml"  # named like the band, but a file
    space.max_arch.to_yaml(bandit)
    groups = parse_arch_groups(
        ["band:3@0.6M", "stratified:2", "min", str(bandit)], space, cost=cost
    )
    assert {n: g for n, (_, g) in groups.items()} == {
        "band00": "band",
        "band01": "band",
        "band02": "band",
        "strat00": "strat",
        "strat01": "strat",
        "min": "min",
        "bandit": "file",
    }


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
def _same(got, want) -> bool:
    """A statistic as ranking.json holds it (None for undefined) against scipy's (nan)."""
    return got is None if np.isnan(want) else got == pytest.approx(want)


def test_rank_end_to_end_resume_and_reuse(trained, tmp_path, capsys, monkeypatch):
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
    assert [r["group"] for r in rows] == ["min", "max", "random"]
    inh = [r["inherited_acc1"] for r in rows]
    std = [r["standalone_acc1"] for r in rows]
    s = result["summary"]["inherited_vs_standalone"]
    assert _same(s["kendall_tau"], scipy.stats.kendalltau(inh, std)[0])
    assert s["gap_mean"] == pytest.approx(np.mean(np.subtract(std, inh)))
    overall = result["summary"]["baselines"]["overall"]
    params = [r["params"] for r in rows]
    assert _same(overall["params"]["kendall_tau"], scipy.stats.kendalltau(params, std)[0])
    assert overall["depth"]["verdict"] in ranking.VERDICTS
    assert all(0 <= r["finetuned_acc1"] <= 100 for r in rows)
    assert (out / "ranking.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "against the free rankings" in printed and "; by depth " in printed
    # standalone runs in the recipe-keyed store, finetunes in the run directory
    store = {n: Path(p) for n, p in result["standalone_store"].items()}
    assert all(p.parent == tmp_path / "rank_standalone" for p in store.values())
    dones = sorted(out.glob("finetune/*/done.json")) + [
        p / "seed0" / "done.json" for p in store.values()
    ]
    assert all(d.is_file() and (d.parent / "checkpoints" / "last.ckpt").is_file() for d in dones)
    assert len(dones) == 6  # 3 standalone + 3 finetune trainings
    assert not (out / "standalone").exists()

    # the same command again trains nothing; an interrupted training resumes from last.ckpt
    before = {d: d.read_bytes() for d in dones}
    (store["max"] / "seed0" / "done.json").unlink()
    assert run_module("ovo.rank", args) == 0
    printed = capsys.readouterr().out
    assert printed.count("[rank]") == 2 and "[rank] standalone max seed 0: resume" in printed
    redone = json.loads((store["max"] / "seed0" / "done.json").read_text())
    assert redone["resumed"] and "ckpt_path=last" in redone["command"]
    assert all(d.read_bytes() == before[d] for d in before if d.parent != store["max"] / "seed0")

    # the same name with another arch under one of its names is refused before anything is
    # written or trained (same seed: the arch file random000.yaml really holds another arch)
    replaced = tmp_path / "random000.yaml"
    load_supernet(trained).space.min_arch.to_yaml(replaced)
    archs_file = out / "archs" / "random000.yaml"
    kept = archs_file.read_bytes()
    other = [a if not a.startswith("archs=") else f"archs=[min,max,{replaced}]" for a in args]
    assert run_module("ovo.rank", other) == 2
    err = capsys.readouterr().err
    assert "another arch under the name random000" in err and "name=" in err, err[-1500:]
    assert archs_file.read_bytes() == kept

    # a second supernet trained with the same recipe (another seed and distillation, neither of
    # which a standalone run uses) reuses every standalone run: nothing is trained
    second = tmp_path / "second"
    overrides = [*FAST, "trainer.max_epochs=1", "model.drop_path_rate=0.1", "seed=1"]
    train(compose_cfg("train", [*overrides, "distill.alpha=0.5"], second))
    launched = _refuse_launch(monkeypatch)
    args2 = [f"ckpt_path={second / 'checkpoints' / 'last.ckpt'}", *args[1:]]
    args2 = [a for a in args2 if not a.startswith(("name=", "finetune."))] + ["name=r2"]
    assert run_module("ovo.rank", args2) == 0, capsys.readouterr().err[-2000:]
    again = json.loads((tmp_path / "rank" / "r2" / "ranking.json").read_text())
    assert launched == [] and again["standalone_store"] == result["standalone_store"]
    assert [r["standalone_acc1"] for r in again["rows"]] == [
        r["standalone_acc1"] for r in json.loads((out / "ranking.json").read_text())["rows"]
    ]

    # and re-reporting against the first ranking's results (another store: none to reuse)
    args3 = [*args2[:-1], "name=r3", f"standalone.results={out / 'ranking.json'}"]
    args3 += [f"standalone.store={tmp_path / 'empty_store'}"]
    assert run_module("ovo.rank", args3) == 0
    third = json.loads((tmp_path / "rank" / "r3" / "ranking.json").read_text())
    assert launched == [] and [r["standalone_acc1"] for r in third["rows"]] == [
        r["standalone_acc1"] for r in again["rows"]
    ]
    assert all(w == [None] for w in (r["standalone_wall_s"] for r in third["rows"]))


def _refuse_launch(monkeypatch) -> list:
    import ovo.jobs

    launched: list = []

    def refuse(argv, log=None, env=None):
        launched.append(list(argv))
        return 1, 0.0

    monkeypatch.setattr(ovo.jobs, "launch", refuse)
    return launched


# a rank directory written by ovo.rank at 2936455 (before ovo.jobs); see its make.sh
OLD = Path(__file__).parent / "fixtures" / "rank_pre_jobs_2936455"
OLD_AT = Path("/tmp/ovo-fixture-rank-2936455")  # where it was written (its records say so)
OLD_ARGS = [
    f"ckpt_path={OLD_AT / 'supernet.ckpt'}",
    f"paths.log_dir={OLD_AT}",
    "archs=[min,max]",
    "standalone.seeds=[0,1]",
    "standalone.overrides=['trainer.max_epochs=1']",
    "wandb.enabled=false",
    "bootstrap=50",
]


@pytest.fixture
def old_rank_dir():
    shutil.rmtree(OLD_AT, ignore_errors=True)
    (OLD_AT / "rank").mkdir(parents=True)
    shutil.copyfile(OLD / "supernet.ckpt", OLD_AT / "supernet.ckpt")
    shutil.copytree(OLD / "rank", OLD_AT / "rank" / "old")
    yield OLD_AT / "rank" / "old"
    shutil.rmtree(OLD_AT, ignore_errors=True)


def test_a_rank_dir_written_before_ovo_jobs_is_reused(old_rank_dir, monkeypatch, capsys):
    import ovo.commands.rank

    launched = _refuse_launch(monkeypatch)
    devices = []
    make_fabric = ovo.commands.rank.make_fabric

    def spy(settings):
        devices.append(settings.devices)
        return make_fabric(settings)

    monkeypatch.setattr(ovo.commands.rank, "make_fabric", spy)
    args = [*OLD_ARGS, "name=old", "eval.devices=auto"]
    assert run_module("ovo.rank", args) == 0, capsys.readouterr().err[-2000:]
    assert devices == [1]  # eval.devices=auto: still one device (one process runs the jobs)
    result = json.loads((old_rank_dir / "ranking.json").read_text())
    assert launched == []
    for row in result["rows"]:
        seeds = [old_rank_dir / "standalone" / row["name"] / f"seed{k}" for k in (0, 1)]
        want = [json.loads((d / "done.json").read_text())["acc1"] for d in seeds]
        assert row["standalone_acc1_per_seed"] == want
    assert "noise_ceiling" in result["summary"]
    # every accuracy is tied here (9.375%): the undefined tau is null in ranking.json
    inh = [r["inherited_acc1"] for r in result["rows"]]
    std = [r["standalone_acc1"] for r in result["rows"]]
    want = scipy.stats.kendalltau(inh, std)[0]
    assert np.isnan(want) and _same(
        result["summary"]["inherited_vs_standalone"]["kendall_tau"], want
    )
    # another arch under one of its names (max.yaml holding the smallest arch) is refused
    capsys.readouterr()
    fake_max = old_rank_dir.parent / "max.yaml"
    load_supernet(OLD_AT / "supernet.ckpt").space.min_arch.to_yaml(fake_max)
    args = [a if not a.startswith("archs=") else f"archs=[min,{fake_max}]" for a in OLD_ARGS]
    assert run_module("ovo.rank", [*args, "name=old"]) == 2
    assert "another arch under the name max" in capsys.readouterr().err
    # with another standalone recipe it is not reused: the old directory's identity refuses it
    args = [a.replace("max_epochs=1", "max_epochs=2") for a in OLD_ARGS]
    assert run_module("ovo.rank", [*args, "name=old"]) == 2
    assert "another standalone_overrides" in capsys.readouterr().err and launched == []
    # nor with another checkpoint under the same name
    other = OLD_AT / "other.ckpt"
    shutil.copyfile(OLD_AT / "supernet.ckpt", other)
    args = [a if not a.startswith("ckpt_path=") else f"ckpt_path={other}" for a in OLD_ARGS]
    assert run_module("ovo.rank", [*args, "name=old"]) == 2
    assert "holds a ranking with another checkpoint" in capsys.readouterr().err


def test_known_results_as_plain_records_train_nothing(old_rank_dir, monkeypatch, tmp_path):
    launched = _refuse_launch(monkeypatch)
    space = load_supernet(OLD_AT / "supernet.ckpt").space
    records = [
        {"arch": a.to_dict(), "seed": k, "acc1": acc, "split": "val", "images": 32, "note": "x"}
        for a, k, acc in (
            (space.min_arch, 0, 40.0),
            (space.min_arch, 1, 42.0),
            (space.max_arch, 0, 50.0),
            (space.max_arch, 1, 53.0),
        )
    ]
    records.append({**records[0], "split": "test", "acc1": 99.0})  # another split: ignored
    known = tmp_path / "known.json"
    known.write_text(json.dumps(records))
    args = [*OLD_ARGS, "name=new", f"standalone.results={known}", "bootstrap=20"]
    args += [f"standalone.store={tmp_path / 'store'}"]
    assert run_module("ovo.rank", args) == 0
    result = json.loads((OLD_AT / "rank" / "new" / "ranking.json").read_text())
    assert launched == []
    assert [r["standalone_acc1_per_seed"] for r in result["rows"]] == [[40.0, 42.0], [50.0, 53.0]]
    assert [r["standalone_acc1"] for r in result["rows"]] == [41.0, 51.5]  # mean over seeds
    ceiling = result["summary"]["noise_ceiling"]["kendall_tau_seed0_vs_seed1"]
    assert ceiling == pytest.approx(1.0)


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
