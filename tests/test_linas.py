"""LINAS: the arch encoding, the predictor and its choice, exactly ``linas.batch`` real scores per
loop inside the space and budgets, the predictor's quality logged against the scores it had not
seen, kill + resume, two ranks, settings."""

from __future__ import annotations

import json
import random

import pytest

from ovo.errors import ConfigError
from ovo.search import Constraints, Search, SearchSettings
from ovo.search.encoding import ArchEncoding
from ovo.search.front import read_evaluations
from ovo.search.linas import LinasSettings, fit_predictor, loop_seed, prediction_quality
from ovo.search.objectives import Objectives
from ovo.space import Arch, SearchSpace, load_space
from ovo.supernet.config import ViTConfig
from ovo.supernet.costs import CostModel
from test_front import MOFitness, toy_table

CFG = ViTConfig(img_size=32, patch_size=4, num_classes=10)
BUDGET = Constraints(params_min="0.4M", params_max="1.0M", flops_max="80M")
LINAS = LinasSettings(initial=10, batch=6, inner_evals=60)
SETTINGS = dict(population=8, generations=4, parents=3)


@pytest.fixture(scope="module")
def nano():
    space = load_space("nano")
    return space, CostModel(CFG, space.head_dim)


def linas(nano, fitness, linas=LINAS, objectives=None, **kwargs):
    space, cost = nano
    extra = {
        k: kwargs.pop(k) for k in ("state_path", "evaluations_path", "on_generation") if k in kwargs
    }
    return Search(
        space,
        cost,
        BUDGET,
        fitness,
        SearchSettings(strategy="linas", **{**SETTINGS, **kwargs}),
        objectives=objectives or Objectives(("acc", "params")),
        linas=linas,
        **extra,
    )


def test_the_encoding_is_one_hot_and_tells_archs_apart():
    space = SearchSpace([32, 48], [1, 2], [1, 2], [1.0, 2.0], head_dim=16, name="mini")
    enc = ArchEncoding(space)
    assert enc.width == 2 + 2 + 2 * (2 + 2)
    # embed 48 | depth 1 | layer 0: heads 2, ratio 1.0 | layer 1: absent
    assert enc.encode(Arch(48, [2], [1.0])) == [0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    archs = {Arch(e, hs, rs) for e in (32, 48) for hs, rs in (([1], [1.0]), ([2, 1], [2.0, 1.0]))}
    archs |= {Arch(e, [h, 1], [r, 2.0]) for e in (32, 48) for h in (1, 2) for r in (1.0, 2.0)}
    codes = {tuple(enc.encode(a)) for a in archs}
    assert len(codes) == len(archs)  # no two archs share a code
    with pytest.raises(ConfigError, match="not in space"):
        enc.encode(Arch(64, [1], [1.0]))


def test_the_predictor_is_chosen_by_cross_validation_and_is_deterministic(nano):
    space, cost = nano
    enc = ArchEncoding(space)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(40)]
    fitness = MOFitness(cost)
    codes, y = enc.encode_all(archs), [fitness.score(a) for a in archs]
    auto = fit_predictor(codes, y, "auto", seed=5)
    assert auto.name.split("(")[0] in ("ridge", "svr", "gp") and auto.cv_mae is not None
    again = fit_predictor(codes, y, "auto", seed=5)
    assert (again.name, again.cv_mae) == (auto.name, auto.cv_mae)
    assert again.predict(codes) == auto.predict(codes)
    # the chosen one is the least cross-validated error among all candidates
    per_kind = [fit_predictor(codes, y, k, seed=5) for k in ("ridge", "svr", "gp")]
    assert auto.cv_mae == min(p.cv_mae for p in per_kind)
    assert fit_predictor(codes, y, "ridge", seed=5).name.startswith("ridge(alpha=")
    few = fit_predictor(codes[:3], y[:3], "auto", seed=5)  # too few to cross-validate
    assert few.name == "ridge(alpha=1)" and few.cv_mae is None


def test_prediction_quality_by_hand():
    # pairs concordant except (b, c): tau = (5 - 1) / 6 ... over 4 points: 6 pairs, 5 concordant
    tau, mape = prediction_quality([1.0, 3.0, 2.0, 4.0], [10.0, 20.0, 30.0, 40.0])
    assert tau == pytest.approx(4 / 6)
    # |1-10|/10, |3-20|/20, |2-30|/30, |4-40|/40 -> (0.9 + 0.85 + 0.9333 + 0.9) / 4
    assert mape == pytest.approx(100 * (0.9 + 0.85 + 28 / 30 + 0.9) / 4)
    assert prediction_quality([1.0], [2.0])[0] is None  # one pair: no tau
    assert prediction_quality([1.0, 2.0], [0.0, 0.0]) == (None, None)  # constant, all zero


def test_linas_spends_exactly_batch_real_scores_per_loop_inside_the_budget(nano, tmp_path):
    space, cost = nano
    fitness = MOFitness(cost)
    state = tmp_path / "s.json"
    proposed = []

    def record(gen, rec, new):
        proposed.append([Arch.from_dict(a) for a in json.loads(state.read_text())["candidates"]])

    result = linas(nano, fitness, state_path=state, on_generation=record).run()
    generations = SETTINGS["generations"]
    assert [len(b) for b in fitness.batches] == [LINAS.initial] + [LINAS.batch] * (generations - 1)
    assert len(set(fitness.archs)) == len(fitness.archs)
    seen: set[Arch] = set()
    for gen, archs in enumerate(proposed[:-1]):
        seen |= set(fitness.batches[gen])
        assert archs == fitness.batches[gen + 1] and len(archs) == LINAS.batch
        assert all(a in space and BUDGET.satisfied(a, cost) for a in archs)
        assert not seen & set(archs)  # never an arch already scored
    loops = result.loops
    assert [r["loop"] for r in loops] == list(range(1, generations))
    assert [r["train"] for r in loops] == [LINAS.initial + i * LINAS.batch for i in range(3)]
    assert all(r["scored"] == LINAS.batch and r["mape"] is not None for r in loops)
    assert all(0 < r["predicted_evals"] <= LINAS.inner_evals for r in loops)
    assert result.to_dict()["linas"]["loops"] == loops


def test_the_logged_quality_is_of_predictions_made_before_the_refit(nano, tmp_path):
    space, cost = nano
    state = tmp_path / "s.json"
    fitness = MOFitness(cost, fail_at=2)  # generations 0 and 1 done; 2 fails
    with pytest.raises(RuntimeError):
        linas(nano, fitness, state_path=state).run()
    pending = json.loads(state.read_text())["proposal"]["pending"]  # the fit of loop 2's
    predicted = {Arch.from_dict(a): p for a, p in pending}
    assert len(predicted) == LINAS.batch
    # they are the predictions of a fit on the scores of generations 0 and 1 alone
    space_enc = ArchEncoding(nano[0])
    before = [Arch.from_dict(e["arch"]) for e in json.loads(state.read_text())["evaluated"]]
    fit = fit_predictor(
        space_enc.encode_all(before),
        [MOFitness(cost).score(a) for a in before],
        LINAS.predictor,
        loop_seed(0, 2),
    )
    assert fit.predict(space_enc.encode_all(list(predicted))) == pytest.approx(
        list(predicted.values())
    )
    result = linas(nano, MOFitness(cost), state_path=state).run()
    loop2 = next(r for r in result.loops if r["loop"] == 2)
    batch = [e for e in result.evaluated if e.generation == 2]
    assert {e.arch for e in batch} == set(predicted)
    tau, mape = prediction_quality(
        [predicted[e.arch] for e in batch], [MOFitness(cost).score(e.arch) for e in batch]
    )
    assert (loop2["kendall_tau"], loop2["mape"]) == (tau, mape)


def test_killed_linas_resumes_to_exactly_the_uninterrupted_result(nano, tmp_path):
    space, cost = nano
    straight = linas(
        nano,
        MOFitness(cost),
        state_path=tmp_path / "a/s.json",
        evaluations_path=tmp_path / "a/e.jsonl",
    ).run()
    for k in (0, 1, 2):
        paths = dict(
            state_path=tmp_path / f"k{k}/s.json", evaluations_path=tmp_path / f"k{k}/e.jsonl"
        )
        flaky = MOFitness(cost, fail_at=k + 1)
        with pytest.raises(RuntimeError):
            linas(nano, flaky, **paths).run()
        rows = read_evaluations(tmp_path / f"k{k}/e.jsonl")
        assert len(rows) == LINAS.initial + k * LINAS.batch
        again = MOFitness(cost)
        resumed = linas(nano, again, **paths).run()
        assert not set(flaky.archs) & set(again.archs)
        assert resumed == straight and resumed.to_dict() == straight.to_dict()
        assert (tmp_path / f"k{k}/e.jsonl").read_text() == (tmp_path / "a/e.jsonl").read_text()


def test_two_ranks_propose_the_same_archs(nano):
    space, cost = nano
    table = toy_table(space)
    objectives = Objectives(("acc", "latency", "params"), table)
    a, b = MOFitness(cost), MOFitness(cost)
    ra = linas(nano, a, objectives=objectives).run()
    rb = linas(nano, b, objectives=objectives).run()
    assert a.batches == b.batches and ra.loops == rb.loops
    c = MOFitness(cost)
    linas(nano, c, objectives=objectives, seed=3).run()
    assert c.batches != a.batches
    assert loop_seed(0, 1) == loop_seed(0, 1) != loop_seed(0, 2) != loop_seed(1, 1)


def test_linas_settings_are_checked():
    assert LinasSettings.from_dict({"predictor": "gp"}).predictor == "gp"
    for data, needle in (
        ({"predictor": "forest"}, "linas.predictor='forest'"),
        ({"initial": 1}, "linas.initial=1"),
        ({"batch": 0}, "linas.batch=0"),
        ({"inner_evals": 0}, "linas.inner_evals=0"),
        ({"batches": 3}, "unknown setting linas.batches"),
    ):
        with pytest.raises(ConfigError, match=needle):
            LinasSettings.from_dict(data)
