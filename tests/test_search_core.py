"""Search core: budgets and feasibility, evolution / random search, resume, results, fronts."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from itertools import product

import pytest

import ovo.atomic as atomic_mod
from ovo.atomic import atomic_write_json
from ovo.errors import ConfigError, InfeasibleBudgetError
from ovo.search import (
    Constraints,
    EvaluatedArch,
    Search,
    SearchResult,
    SearchSettings,
    check_feasible,
    pareto_front,
    sample_feasible,
    space_span,
)
from ovo.space import Arch, SearchSpace, load_space
from ovo.supernet.config import ViTConfig
from ovo.supernet.costs import CostModel

CFG = ViTConfig(img_size=32, patch_size=4, num_classes=10)
# nano spans ~0.21M-1.6M params and ~17-116M MACs at 32px; this budget admits about a third of
# it, so it prunes for real while random draws still find feasible archs quickly.
BUDGET = Constraints(params_min="0.4M", params_max="1.0M", flops_max="80M")
SMALL = dict(population=16, generations=6, parents=4, mutations=6, crossovers=6)

# Known optimum of the synthetic fitness: this arch scores 0, every other arch less.
TARGET = Arch(96, (4, 3, 2, 3, 4), (2.0, 3.0, 4.0, 3.0, 2.0))


def synthetic(arch: Arch) -> float:
    """Per-gene distance to TARGET (negated): smooth enough that evolution can climb it."""
    score = -abs(arch.embed_dim - TARGET.embed_dim) / 32 - 2 * abs(arch.depth - TARGET.depth)
    for i in range(min(arch.depth, TARGET.depth)):
        score -= abs(arch.num_heads[i] - TARGET.num_heads[i])
        score -= abs(arch.mlp_ratio[i] - TARGET.mlp_ratio[i])
    return score


class CountingFitness:
    """Batched synthetic fitness that records every call; optionally fails on call ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.batches: list[list[Arch]] = []
        self.fail_at = fail_at

    def __call__(self, archs: list[Arch]) -> list[float]:
        if self.fail_at is not None and len(self.batches) == self.fail_at:
            raise RuntimeError("simulated interruption")
        self.batches.append(list(archs))
        return [synthetic(a) for a in archs]

    @property
    def archs(self) -> list[Arch]:
        return [a for batch in self.batches for a in batch]


@pytest.fixture(scope="module")
def nano() -> tuple[SearchSpace, CostModel]:
    space = load_space("nano")
    return space, CostModel(CFG, space.head_dim)


@pytest.fixture(scope="module")
def tiny() -> tuple[SearchSpace, CostModel]:
    space = load_space("tiny")
    return space, CostModel(CFG, space.head_dim)


def make_search(
    strategy, space, cost, constraints, fitness, state_path=None, on_generation=None, **settings
) -> Search:
    """A search of ``strategy`` with these settings (the rest AutoFormer's defaults)."""
    return Search(
        space,
        cost,
        constraints,
        fitness,
        SearchSettings(strategy=strategy, **settings),
        state_path=state_path,
        on_generation=on_generation,
    )


def EvolutionSearch(space, cost, constraints, fitness, **kwargs) -> Search:  # noqa: N802
    return make_search("evolution", space, cost, constraints, fitness, **kwargs)


def RandomSearch(space, cost, constraints, fitness, **kwargs) -> Search:  # noqa: N802
    return make_search("random", space, cost, constraints, fitness, **kwargs)


def evolution(nano, fitness, constraints=BUDGET, **kwargs) -> Search:
    space, cost = nano
    return EvolutionSearch(space, cost, constraints, fitness, **{**SMALL, **kwargs})


# ---- constraints -------------------------------------------------------------------------------
def test_constraints_parse_human_units_and_reject_bad_values():
    c = Constraints.from_dict({"params_max": "5.5M", "macs_min": "1.2G", "params_min": 1e6})
    assert c.to_dict() == {
        "params_min": 1_000_000,
        "params_max": 5_500_000,
        "flops_min": 1_200_000_000,
        "flops_max": None,
        "latency_ms_max": None,
        "latency_table": None,
        "latency_device": None,
    }
    assert Constraints.from_dict({"flops_max": "300k", "params_max": None}).flops_max == 300_000
    assert Constraints.from_dict(None).unbounded
    assert c.describe() == "params in [1M, 5.5M] and FLOPs >= 1.2G"
    with pytest.raises(ConfigError, match="unknown setting constraints.energy_max"):
        Constraints.from_dict({"energy_max": 3})
    with pytest.raises(ConfigError, match="above params_max"):
        Constraints(params_min="2M", params_max="1M")
    with pytest.raises(ConfigError, match="not a count"):
        Constraints(params_max="lots")


def test_satisfied_uses_closed_form_costs(nano):
    space, cost = nano
    arch = space.sample(random.Random(0))
    p, f = cost.params(arch), cost.macs(arch)
    assert Constraints(params_min=p, params_max=p, flops_min=f, flops_max=f).satisfied(arch, cost)
    assert not Constraints(params_max=p - 1).satisfied(arch, cost)
    assert not Constraints(flops_min=f + 1).satisfied(arch, cost)


# ---- feasibility -------------------------------------------------------------------------------
def test_budget_outside_the_space_fails_before_any_evaluation(tiny):
    space, cost = tiny
    fitness = CountingFitness()
    search = EvolutionSearch(space, cost, Constraints(params_max="1M"), fitness)
    with pytest.raises(InfeasibleBudgetError) as err:
        search.run()
    msg = str(err.value)
    assert "\n" not in msg
    assert "space 'tiny'" in msg and "params <= 1M" in msg and "widen the budget" in msg
    assert "4.92M-9.97M params" in msg and "336-674 MMACs" in msg
    assert fitness.batches == []


def test_jointly_infeasible_budget_fails_before_any_evaluation(nano):
    space, cost = nano
    p_lo, p_hi, f_lo, f_hi = space_span(space, cost)
    # Each bound alone is reachable; together they ask for few params but many FLOPs.
    c = Constraints(params_max="300K", flops_min="80M")
    assert p_lo < c.params_max < p_hi and f_lo < c.flops_min < f_hi
    fitness = CountingFitness()
    with pytest.raises(InfeasibleBudgetError, match=r"params <= 300K and FLOPs >= 80M: the space"):
        EvolutionSearch(space, cost, c, fitness).run()
    with pytest.raises(InfeasibleBudgetError):
        RandomSearch(space, cost, c, fitness).run()
    assert fitness.batches == []


def test_feasibility_check_is_exact_on_a_small_space():
    # Brute force over every arch of a small space against random (often narrow) budgets.
    space = SearchSpace([32, 48], [1, 2, 3], [1, 2], [1.0, 2.0], head_dim=16, name="mini")
    cost = CostModel(CFG, space.head_dim)
    archs = [
        Arch(e, hs, rs)
        for e, d in product(space.embed_dim, space.depth)
        for hs in product(space.num_heads, repeat=d)
        for rs in product(space.mlp_ratio, repeat=d)
    ]
    assert len(archs) == space.num_archs()
    costs = [(cost.params(a), cost.macs(a)) for a in archs]
    rng = random.Random(0)
    outcomes = set()
    for _ in range(60):
        (p1, _), (_, f2) = rng.choice(costs), rng.choice(costs)
        # A params window around one arch and a FLOPs window around another.
        c = Constraints(
            params_min=p1,
            params_max=p1 + rng.randint(0, 3000),
            flops_min=max(0, f2 - rng.randint(0, 300_000)),
            flops_max=f2,
        )
        expected = any(c.admits(p, f) for p, f in costs)
        try:
            witness = check_feasible(space, cost, c, samples=5)  # few draws: exercise the DP
        except InfeasibleBudgetError:
            assert not expected, c
            outcomes.add(False)
        else:
            assert expected and witness in space and c.satisfied(witness, cost)
            outcomes.add(True)
    assert outcomes == {True, False}


def test_sample_feasible_draws_within_budget_or_says_why(nano):
    space, cost = nano
    rng = random.Random(1)
    for _ in range(20):
        assert BUDGET.satisfied(sample_feasible(space, cost, BUDGET, rng), cost)
    arch = check_feasible(space, cost, BUDGET)
    exact = Constraints(params_min=cost.params(arch), params_max=cost.params(arch))
    with pytest.raises(InfeasibleBudgetError, match="drew 3 random archs"):
        sample_feasible(space, cost, exact, random.Random(0), max_tries=3, exclude={arch})


# ---- evolution ---------------------------------------------------------------------------------
def test_only_feasible_new_archs_are_evaluated_one_batch_per_generation(nano):
    space, cost = nano
    fitness = CountingFitness()
    records = []
    result = evolution(nano, fitness, on_generation=lambda g, r, new: records.append((g, r))).run()
    assert len(fitness.batches) == SMALL["generations"]
    evaluated = fitness.archs
    assert all(BUDGET.satisfied(a, cost) and a in space for a in evaluated)
    assert len(evaluated) == len(set(evaluated))  # nothing evaluated twice over the run
    assert len(fitness.batches[0]) == SMALL["population"]
    assert all(len(b) <= SMALL["population"] for b in fitness.batches)
    assert [g for g, _ in records] == list(range(SMALL["generations"]))
    assert [r.num_new for _, r in records] == [len(b) for b in fitness.batches]
    assert [e.arch for e in result.evaluated] == evaluated
    for e in result.evaluated:
        assert (e.params, e.flops) == (cost.params(e.arch), cost.macs(e.arch))
        assert e.fitness == synthetic(e.arch)
    for (_, r), batch in zip(records, fitness.batches):
        assert {e.arch for e in result.evaluated if e.generation == r.generation} == set(batch)
    bests = [r.best_fitness for _, r in records]
    assert bests == sorted(bests)  # elitist: the best so far never gets worse
    assert result.best.fitness == max(synthetic(a) for a in evaluated)


def test_autoformer_defaults_stay_within_population_times_generations(nano):
    fitness = CountingFitness()
    space, cost = nano
    result = EvolutionSearch(space, cost, None, fitness, generations=5).run()
    assert len(fitness.batches[0]) == 50
    assert len(result.evaluated) == len(set(fitness.archs)) <= 50 * 5


def test_same_seed_same_result_different_seed_different(nano):
    a = evolution(nano, CountingFitness(), seed=3).run()
    b = evolution(nano, CountingFitness(), seed=3).run()
    c = evolution(nano, CountingFitness(), seed=4).run()
    assert a == b and a.to_dict() == b.to_dict()
    assert [e.arch for e in a.evaluated] != [e.arch for e in c.evaluated]


def test_random_search_has_the_same_budget_and_respects_constraints(nano):
    space, cost = nano
    fitness = CountingFitness()
    result = make_search("random", space, cost, BUDGET, fitness, seed=0, **SMALL).run()
    assert isinstance(result, SearchResult) and result.strategy == "random"
    assert [len(b) for b in fitness.batches] == [SMALL["population"]] * SMALL["generations"]
    assert len(set(fitness.archs)) == SMALL["population"] * SMALL["generations"]
    assert all(BUDGET.satisfied(a, cost) for a in fitness.archs)
    assert result.history[0].top_k == SMALL["parents"]  # logs the same top-k statistic
    evo = CountingFitness()
    evolution(nano, evo, seed=0).run()
    assert len(evo.archs) <= len(fitness.archs)
    assert evo.batches[0] == fitness.batches[0]  # the same seed draws the same generation 0


def test_evolution_beats_random_on_the_synthetic_fitness(nano):
    space, cost = nano
    settings = dict(population=20, generations=10, parents=5, mutations=8, crossovers=8)
    for seed in (0, 1, 2):
        evo = EvolutionSearch(space, cost, None, CountingFitness(), seed=seed, **settings).run()
        rnd = make_search("random", space, cost, None, CountingFitness(), seed=seed, **settings)
        rnd_result = rnd.run()
        assert len(evo.evaluated) <= len(rnd_result.evaluated)
        assert evo.best.fitness > rnd_result.best.fitness, seed


# ---- resume ------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_interrupted_search_resumes_to_exactly_the_uninterrupted_result(nano, tmp_path, strategy):
    space, cost = nano
    gens, k = SMALL["generations"], 2
    reference = make_search(strategy, space, cost, BUDGET, CountingFitness(), **SMALL).run()

    state = tmp_path / "search_state.json"
    flaky = CountingFitness(fail_at=k + 1)  # generations 0..k complete, k+1 fails
    with pytest.raises(RuntimeError, match="simulated interruption"):
        make_search(strategy, space, cost, BUDGET, flaky, state_path=state, **SMALL).run()
    saved = json.loads(state.read_text())
    assert saved["generation"] == k and not saved["complete"]
    done = {Arch.from_dict(e["arch"]) for e in saved["evaluated"]}
    assert done == set(flaky.archs)

    fitness = CountingFitness()
    seen = []
    resumed = make_search(
        strategy,
        space,
        cost,
        BUDGET,
        fitness,
        state_path=state,
        on_generation=lambda g, r, new: seen.append(g),
        **SMALL,
    ).run()
    assert seen == list(range(k + 1, gens))
    assert len(fitness.batches) == gens - k - 1  # one call per remaining generation
    assert not done & set(fitness.archs)  # nothing completed is evaluated again
    assert resumed == reference
    assert resumed.to_dict() == reference.to_dict()

    # A finished state resumes to the same result without evaluating anything.
    again = CountingFitness()
    assert make_search(strategy, space, cost, BUDGET, again, state_path=state, **SMALL).run() == (
        reference
    )
    assert again.batches == []


def test_state_from_other_settings_is_refused(nano, tmp_path):
    state = tmp_path / "state.json"
    evolution(nano, CountingFitness(), state_path=state, generations=2).run()
    for change, key in (
        (dict(seed=1), "seed"),
        (dict(mutation_prob=0.3), "mutation_prob"),
        (dict(constraints=replace(BUDGET, params_max="0.9M")), "constraints.params_max"),
    ):
        fitness = CountingFitness()
        with pytest.raises(ConfigError, match=rf"other settings \({key}"):
            evolution(nano, fitness, state_path=state, **{"generations": 2, **change}).run()
        assert fitness.batches == []
    space, cost = nano
    with pytest.raises(ConfigError, match="strategy"):
        RandomSearch(
            space,
            cost,
            BUDGET,
            CountingFitness(),
            state_path=state,
            **{
                "population": SMALL["population"],
                "generations": 2,
            },
        ).run()
    state.write_text("{ truncated")
    with pytest.raises(ConfigError, match="cannot be read"):
        evolution(nano, CountingFitness(), state_path=state, generations=2).run()


def test_state_layout(nano, tmp_path):
    state = tmp_path / "state.json"
    search = evolution(nano, CountingFitness(), state_path=state, generations=2)
    search.run()
    data = json.loads(state.read_text())
    assert data["format"] == "ovo.search.state" and data["version"] == 2
    assert data["settings"] == search.settings and data["settings"]["strategy"] == "evolution"
    assert len(data["fingerprint"]) == 16 and data["complete"] and data["generation"] == 1
    rng = random.Random()
    rng.setstate((data["rng_state"][0], tuple(data["rng_state"][1]), data["rng_state"][2]))
    assert set(data["evaluated"][0]) == {
        "arch",
        "fitness",
        "params",
        "flops",
        "generation",
        "images",
        "complete",
    }
    assert data["candidates"] == [] and len(data["history"]) == 2


def test_state_write_is_atomic(nano, tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    atomic_write_json(path, {"step": 1})
    real_replace = atomic_mod.os.replace

    def crash(src, dst):
        raise OSError("simulated crash between write and replace")

    monkeypatch.setattr(atomic_mod.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_json(path, {"step": 2, "payload": list(range(1000))})
    assert json.loads(path.read_text()) == {"step": 1}  # the old state survives whole
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind

    # A crash while saving generation 3 leaves generation 2's state, which resumes exactly.
    calls = {"n": 0}

    def crash_third(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("simulated crash between write and replace")
        real_replace(src, dst)

    monkeypatch.setattr(atomic_mod.os, "replace", crash_third)
    state = tmp_path / "search.json"
    with pytest.raises(OSError):
        evolution(nano, CountingFitness(), state_path=state).run()
    assert json.loads(state.read_text())["generation"] == 1
    monkeypatch.setattr(atomic_mod.os, "replace", real_replace)
    (tmp_path / ".search.json.999.tmp").write_text('{"half a')  # debris of a killed writer
    assert evolution(nano, CountingFitness(), state_path=state).run() == (
        evolution(nano, CountingFitness()).run()
    )


# ---- results -----------------------------------------------------------------------------------
def test_pareto_front_on_a_hand_made_set():
    points = {  # name: (cost, fitness)
        "g": (0.5, 0.1),
        "a": (1, 0.5),
        "b": (2, 0.7),
        "c": (2, 0.6),  # same cost as b, lower fitness
        "d": (3, 0.7),  # same fitness as b, higher cost
        "e": (4, 0.9),
        "f": (4, 0.9),  # exact tie with e: neither dominates
        "h": (5, 0.8),
        "i": (0.5, 0.05),
    }
    front = pareto_front(points, fitness=lambda n: points[n][1], cost=lambda n: points[n][0])
    assert front == ["g", "a", "b", "e", "f"]
    assert pareto_front([], fitness=float, cost=float) == []


def test_result_best_top_k_fronts_and_json_roundtrip(nano):
    arch = [Arch.uniform(64, 4, h, r) for h, r in product((2, 3, 4), (2.0, 3.0))]
    rows = [(0.5, 10, 100), (0.7, 20, 100), (0.7, 30, 50), (0.2, 5, 300), (0.9, 40, 400)]
    evaluated = [EvaluatedArch(arch[i], f, p, m, 0) for i, (f, p, m) in enumerate(rows)]
    result = SearchResult("evolution", evaluated, history=[])
    assert result.best is evaluated[4] and result.best_arch == arch[4]
    assert result.top_k(3) == [evaluated[4], evaluated[1], evaluated[2]]  # tie: fewer params
    cheaper_later = EvaluatedArch(arch[5], 0.9, 39, 400, 1)
    assert SearchResult("evolution", [*evaluated, cheaper_later], []).best is cheaper_later
    same_cost = EvaluatedArch(arch[5], 0.9, 40, 400, 1)
    assert SearchResult("evolution", [*evaluated, same_cost], []).best is evaluated[4]  # order
    assert result.pareto_params == [evaluated[3], evaluated[0], evaluated[1], evaluated[4]]
    assert result.pareto_flops == [evaluated[2], evaluated[4]]

    full = evolution(nano, CountingFitness(), generations=3).run()
    data = json.loads(json.dumps(full.to_dict(), allow_nan=False))
    assert set(data) >= {"best", "top_k", "pareto_params", "pareto_flops", "history", "evaluated"}
    assert data["num_evaluated"] == len(full.evaluated) and len(data["history"]) == 3
    assert data["best"] == full.best.to_dict()
    assert SearchResult.from_dict(data) == full
