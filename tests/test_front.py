"""The front: non-dominated sorting, crowding and hypervolume on hand-computed point sets; the
objectives and their reference point; NSGA-II as a proposal of ovo's search (budget box, one
batch per generation, kill + resume, two ranks, warm starts); the front's files and
``results.json``'s one writer and reader."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ovo.errors import ConfigError
from ovo.search import Constraints, EvaluatedArch, Search, SearchSettings
from ovo.search.front import (
    build_front,
    front_csv,
    front_entries,
    front_hypervolume,
    read_evaluations,
    read_front,
    read_front_members,
    write_front,
)
from ovo.search.moo import (
    crowding_distances,
    hypervolume,
    nondominated,
    nondominated_ranks,
    survival_order,
)
from ovo.search.objectives import Objectives, slowest_arch
from ovo.search.result import (
    FinalScore,
    RunFacts,
    SearchReport,
    read_results,
    write_results,
)
from ovo.space import Arch, SearchSpace, load_space
from ovo.supernet.config import ViTConfig
from ovo.supernet.costs import CostModel

FIX = Path(__file__).parent / "fixtures" / "pre_refactor_465a06b"
CFG = ViTConfig(img_size=32, patch_size=4, num_classes=10)
BUDGET = Constraints(params_min="0.4M", params_max="1.0M", flops_max="80M")
NSGA = dict(population=8, generations=5, parents=3)


# ---- the arithmetic, on point sets computed by hand ---------------------------------------------
# (objective 1, objective 2), both minimised
POINTS = [(1, 5), (2, 3), (3, 1), (2, 4), (4, 4), (3, 3)]


def test_nondominated_sorting_by_hand():
    # (2,4) is dominated by (2,3) only; (3,3) by (2,3) and (3,1); (4,4) by both of those too
    assert nondominated_ranks(POINTS) == [0, 0, 0, 1, 2, 1]
    assert nondominated(POINTS) == [0, 1, 2]
    # equal points do not dominate each other; a point worse in one objective only is dominated
    assert nondominated_ranks([(1, 1), (1, 1), (1, 2)]) == [0, 0, 1]
    assert nondominated_ranks([(0, 0, 0), (0, 0, 1), (1, 0, 0), (-1, 5, 5)]) == [0, 1, 1, 0]
    assert nondominated_ranks([]) == []


def test_crowding_distance_by_hand():
    # front (1,5) (2,3) (3,1): ranges 2 and 4; (2,3) has neighbours 1..3 and 1..5 -> (1 + 1) / 2
    assert crowding_distances([(1, 5), (2, 3), (3, 1)]) == [float("inf"), 1.0, float("inf")]
    # (1,2): (3-0)/4 and (4-1)/4 -> 0.75; (3,1): (4-1)/4 and (2-0)/4 -> 0.625
    d = crowding_distances([(0, 4), (1, 2), (3, 1), (4, 0)])
    assert d[0] == d[3] == float("inf") and d[1:3] == pytest.approx([0.75, 0.625])
    assert crowding_distances([(1, 1), (2, 0)]) == [float("inf")] * 2  # a front of two
    assert crowding_distances([]) == []


def test_survival_order_is_rank_then_crowding_then_index():
    order, ranks, crowding = survival_order(POINTS)
    # front 0: the extremes (inf) before (2,3) (1.0); front 1 has two points (both inf): by index
    assert order == [0, 2, 1, 3, 5, 4]
    assert ranks == [0, 0, 0, 1, 2, 1] and crowding[1] == 1.0


def test_hypervolume_by_hand():
    # 2-D, reference (5,6): strips x 1..2 (height 1), 2..3 (3), 3..5 (5) -> 1 + 3 + 10
    assert hypervolume(POINTS[:3], (5, 6)) == pytest.approx(14.0)
    assert hypervolume(POINTS, (5, 6)) == pytest.approx(14.0)  # dominated points add nothing
    assert hypervolume([(5, 1)], (5, 6)) == 0.0  # on the reference's border: nothing
    assert hypervolume([(9, 9)], (5, 6)) == 0.0 and hypervolume([], (5, 6)) == 0.0
    # 3-D: one box 1 x 2 x 3; two boxes 2*2*1 + 1*1*2 overlapping in 1*1*1
    assert hypervolume([(0, 0, 0)], (1, 2, 3)) == pytest.approx(6.0)
    assert hypervolume([(0, 0, 1), (1, 1, 0)], (2, 2, 2)) == pytest.approx(5.0)


# ---- objectives ----------------------------------------------------------------------------------
def test_objectives_are_checked_in_one_line():
    assert Objectives().names == ("acc", "params")
    assert Objectives.parse(["flops", "acc"]).names == ("acc", "macs")  # alias; acc first
    assert Objectives.parse("acc,params,macs").names == ("acc", "params", "macs")
    for names, needle in (
        (["acc", "energy"], "unknown objective 'energy'"),
        (["acc", "params", "macs", "latency"], "has 4 objective(s)"),
        (["params", "macs"], "has no acc"),
        (["acc"], "has 1 objective(s)"),
        (["acc", "params", "params"], "names an objective twice"),
        (["acc", "latency"], "needs a latency table"),
    ):
        with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            Objectives.parse(names)


def toy_table(space, img=32, patch=4, classes=10):
    from ovo.latency import LatencyTable

    blocks = {(e, h, m): 0.01 * e + 0.1 * h + 0.001 * m for e, h, m in space.block_shapes()}
    conditions = {"device": "cpu: toy", "threads": 1, "dtype": "float32", "batch": 1}
    conditions |= {"tokens": (img // patch) ** 2 + 1, "space": space.to_dict()}
    conditions["model"] = {"img_size": img, "patch_size": patch, "in_chans": 3}
    conditions["model"] |= {"num_classes": classes, "global_pool": "token"}
    conditions["model"]["head_dim"] = space.head_dim
    stems = {e: 0.5 + 0.001 * e for e in space.embed_dim}
    return LatencyTable(conditions, stems, blocks, {e: 0.2 for e in space.embed_dim}, "toy")


def test_reference_point_is_fixed_by_the_space():
    space = SearchSpace([32, 48], [1, 2], [1, 3, 2], [1.0, 2.0], head_dim=16, name="mini")
    cost = CostModel(CFG, space.head_dim)
    table = toy_table(space)
    # the slowest arch by brute force over every arch of the space
    archs = [space.sample(random.Random(i)) for i in range(3000)]
    archs += [Arch.uniform(e, 2, h, r) for e in (32, 48) for h in (1, 2, 3) for r in (1.0, 2.0)]
    assert table.predict(slowest_arch(table, space)) == max(table.predict(a) for a in archs)
    ref = Objectives(("acc", "latency", "params", "macs")[:3], table).reference(space, cost)
    assert ref == (0.0, table.predict(slowest_arch(table, space)), cost.params(space.max_arch))
    macs = Objectives(("acc", "macs")).reference(space, cost)
    assert macs == (0.0, float(cost.macs(space.max_arch)))
    assert all(cost.macs(a) <= macs[1] for a in archs)


def test_normalised_hypervolume_by_hand():
    objectives = Objectives(("acc", "params"))
    a = [Arch.uniform(64, 4, h, 2.0) for h in (2, 3, 4)]
    entries = [
        EvaluatedArch(a[0], 50.0, 500, 0, 0),  # -> (0.5, 0.5)
        EvaluatedArch(a[1], 80.0, 1000, 0, 0),  # at the reference cost: adds nothing
        EvaluatedArch(a[2], 20.0, 100, 0, 0),  # -> (0.8, 0.1)
    ]
    # boxes 0.5 x 0.5 and 0.2 x 0.9 overlapping in 0.2 x 0.5
    assert front_hypervolume(entries, objectives, (0.0, 1000.0)) == pytest.approx(0.33)


# ---- fitness functions for the searches -----------------------------------------------------------
class MOFitness:
    """A deterministic top-1 (%) that grows with an arch's size, plus an arch-specific wobble:
    a real trade-off for the front. Records every batch; optionally fails on call ``fail_at``."""

    def __init__(self, cost: CostModel, fail_at: int | None = None) -> None:
        self.cost, self.fail_at = cost, fail_at
        self.batches: list[list[Arch]] = []

    def score(self, arch: Arch) -> float:
        size = self.cost.params(arch) / 1.6e6
        return round(20 + 60 * size + 8 * random.Random(arch.short()).random(), 3)

    def __call__(self, archs: list[Arch]) -> list[float]:
        if self.fail_at is not None and len(self.batches) == self.fail_at:
            raise RuntimeError("simulated interruption")
        self.batches.append(list(archs))
        return [self.score(a) for a in archs]

    @property
    def archs(self) -> list[Arch]:
        return [a for b in self.batches for a in b]


@pytest.fixture(scope="module")
def nano():
    space = load_space("nano")
    return space, CostModel(CFG, space.head_dim)


SEARCH_ARGS = ("state_path", "evaluations_path", "warm", "on_generation")


def nsga2(nano, fitness, objectives=None, constraints=BUDGET, **kwargs):
    """An NSGA-II search on nano (``NSGA`` settings, ``kwargs`` over them)."""
    space, cost = nano
    extra = {k: kwargs.pop(k) for k in SEARCH_ARGS if k in kwargs}
    return Search(
        space,
        cost,
        constraints,
        fitness,
        SearchSettings(strategy="nsga2", **{**NSGA, **kwargs}),
        objectives=objectives or Objectives(("acc", "params", "macs")),
        **extra,
    )


# ---- NSGA-II -------------------------------------------------------------------------------------
def test_nsga2_scores_each_generation_in_one_batch_inside_the_budget(nano, tmp_path):
    space, cost = nano
    fitness = MOFitness(cost)
    state = tmp_path / "state.json"
    proposed: list[list[Arch]] = []

    def record(gen, rec, new):  # what each generation proposed, as saved with the state
        proposed.append([Arch.from_dict(a) for a in json.loads(state.read_text())["candidates"]])

    result = nsga2(nano, fitness, state_path=state, on_generation=record).run()
    assert len(fitness.batches) == NSGA["generations"]
    assert [len(b) for b in fitness.batches] == [NSGA["population"]] * NSGA["generations"]
    assert len(set(fitness.archs)) == len(fitness.archs)  # nothing scored twice
    scored_before: set[Arch] = set()
    for gen, archs in enumerate(proposed[:-1]):
        scored_before |= set(fitness.batches[gen])
        assert archs == fitness.batches[gen + 1]  # the proposal is what the next batch scores
        assert all(a in space and BUDGET.satisfied(a, cost) for a in archs)
        assert not scored_before & set(archs)
    assert proposed[-1] == []
    assert [e.arch for e in result.evaluated] == fitness.archs
    # the front is the non-dominated set of everything scored
    objectives = Objectives(("acc", "params", "macs"))
    members = front_entries(result.evaluated, objectives)
    for m in members:
        assert not any(
            e.fitness >= m.fitness
            and e.params <= m.params
            and e.flops <= m.flops
            and e != m
            and (e.fitness, e.params, e.flops) != (m.fitness, m.params, m.flops)
            for e in result.evaluated
        )


def test_nsga2_improves_the_hypervolume_over_random(nano):
    space, cost = nano
    objectives = Objectives(("acc", "params"))
    ref = objectives.reference(space, cost)
    hv = {}
    for strategy in ("nsga2", "random"):
        wins = []
        for seed in (0, 1, 2):
            settings = SearchSettings(
                strategy=strategy, seed=seed, population=12, generations=8, parents=3
            )
            result = Search(
                space, cost, None, MOFitness(cost), settings, objectives=objectives
            ).run()
            wins.append(front_hypervolume(result.evaluated, objectives, ref))
        hv[strategy] = sum(wins) / len(wins)
    assert hv["nsga2"] > hv["random"], hv


def test_killed_nsga2_resumes_to_exactly_the_uninterrupted_result(nano, tmp_path):
    space, cost = nano
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = nsga2(
        nano,
        MOFitness(cost),
        state_path=straight_dir / "s.json",
        evaluations_path=straight_dir / "evaluations.jsonl",
    ).run()
    k = 2
    flaky = MOFitness(cost, fail_at=k + 1)
    paths = dict(
        state_path=killed_dir / "s.json", evaluations_path=killed_dir / "evaluations.jsonl"
    )
    with pytest.raises(RuntimeError, match="simulated interruption"):
        nsga2(nano, flaky, **paths).run()
    state = json.loads((killed_dir / "s.json").read_text())
    lines = read_evaluations(killed_dir / "evaluations.jsonl")
    assert state["generation"] == k
    assert [r["arch"] for r in lines] == [Arch.from_dict(e["arch"]) for e in state["evaluated"]]
    fitness = MOFitness(cost)
    resumed = nsga2(nano, fitness, **paths).run()
    assert not set(flaky.archs) & set(fitness.archs)  # nothing scored again
    assert len(fitness.batches) == NSGA["generations"] - k - 1
    assert resumed == straight and resumed.to_dict() == straight.to_dict()
    assert (killed_dir / "evaluations.jsonl").read_text() == (
        straight_dir / "evaluations.jsonl"
    ).read_text()


def test_a_stale_evaluations_file_is_repaired_on_resume(nano, tmp_path):
    """A kill between the state's save and the file's rewrite (here: after the last one, so no
    later save rewrites it): the same command repairs it, no line lost, none twice."""
    space, cost = nano
    paths = dict(state_path=tmp_path / "s.json", evaluations_path=tmp_path / "e.jsonl")
    nsga2(nano, MOFitness(cost), **paths).run()
    good = (tmp_path / "e.jsonl").read_text()
    lines = good.splitlines(keepends=True)
    (tmp_path / "e.jsonl").write_text("".join(lines[:-3]) + lines[0])  # lost three, one twice
    fitness = MOFitness(cost)
    nsga2(nano, fitness, **paths).run()
    assert fitness.batches == [] and (tmp_path / "e.jsonl").read_text() == good
    rows = read_evaluations(tmp_path / "e.jsonl")
    state = json.loads((tmp_path / "s.json").read_text())
    assert [r["arch"] for r in rows] == [Arch.from_dict(e["arch"]) for e in state["evaluated"]]


def test_nothing_is_proposed_twice_in_a_small_space(tmp_path):
    """40 archs in all: children that repeat a scored arch are certain, and must be redrawn."""
    space = SearchSpace([32, 48], [1, 2], [1, 2], [1.0, 2.0], head_dim=16, name="mini")
    cost = CostModel(CFG, space.head_dim)
    fitness = MOFitness(cost)
    state = tmp_path / "s.json"
    proposed = []

    def record(gen, rec, new):
        proposed.append([Arch.from_dict(a) for a in json.loads(state.read_text())["candidates"]])

    settings = SearchSettings(strategy="nsga2", population=6, generations=6, parents=2)
    Search(space, cost, None, fitness, settings, state_path=state, on_generation=record).run()
    assert len(set(fitness.archs)) == len(fitness.archs) == 36
    for gen, archs in enumerate(proposed[:-1]):
        assert archs == fitness.batches[gen + 1]


def test_parents_are_the_best_by_rank_then_crowding(nano):
    space, cost = nano
    objectives = Objectives(("acc", "params", "macs"))
    search = nsga2(nano, MOFitness(cost), objectives)
    search.run()
    entries = search.scored()
    points = [(-e.fitness, e.params, e.flops) for e in entries]
    order, ranks, _ = survival_order(points)
    parents = search.proposal.parents(search)
    assert [p.arch for p in parents] == [entries[i].arch for i in order[: NSGA["population"]]]
    front = {entries[i].arch for i in nondominated(points)}
    assert front <= {p.arch for p in parents} or len(front) > NSGA["population"]
    assert [p.rank for p in parents] == sorted(p.rank for p in parents)


def test_two_ranks_propose_the_same_archs(nano):
    """Two Search objects with the same settings stand for two DDP ranks."""
    space, cost = nano
    a, b = MOFitness(cost), MOFitness(cost)
    nsga2(nano, a).run()
    nsga2(nano, b).run()
    assert a.batches == b.batches
    c = MOFitness(cost)
    nsga2(nano, c, seed=1).run()
    assert c.batches != a.batches


def test_nsga2_state_from_other_objectives_is_refused(nano, tmp_path):
    space, cost = nano
    state = tmp_path / "s.json"
    nsga2(nano, MOFitness(cost), generations=2, state_path=state).run()
    with pytest.raises(ConfigError, match="objectives"):
        nsga2(
            nano,
            MOFitness(cost),
            Objectives(("acc", "macs")),
            generations=2,
            state_path=state,
        ).run()


def test_halving_with_a_front_is_refused_in_one_line():
    for strategy in ("nsga2", "linas"):
        with pytest.raises(ConfigError, match="fitness=halving races") as err:
            SearchSettings(strategy=strategy, fitness="halving")
        assert "\n" not in str(err.value)


# ---- warm starts -----------------------------------------------------------------------------------
def test_warm_start_scores_nothing_already_scored(nano):
    space, cost = nano
    first = nsga2(nano, MOFitness(cost)).run()
    # a second "device": another objective; the earlier scores are reused, never scored again
    fitness = MOFitness(cost)
    warm = nsga2(nano, fitness, Objectives(("acc", "macs")), warm=first.evaluated).run()
    earlier = {e.arch for e in first.evaluated}
    assert fitness.archs and not earlier & set(fitness.archs)
    reused = [e for e in warm.evaluated if e.reused]
    assert {e.arch for e in reused} == earlier and all(e.generation == -1 for e in reused)
    assert {e.arch: e.fitness for e in reused} == {e.arch: e.fitness for e in first.evaluated}
    assert warm.images_scored == sum(e.images for e in warm.evaluated if not e.reused)
    # one generation on the earlier archive alone costs no score at all
    none = MOFitness(cost)
    again = nsga2(nano, none, Objectives(("acc", "macs")), generations=1, warm=first.evaluated)
    assert len(again.run().evaluated) == len(first.evaluated) and none.batches == []
    # scores outside this search's budget box stay out of its archive
    tight = Constraints(params_min="0.4M", params_max="0.7M", flops_max="80M")
    boxed = nsga2(nano, MOFitness(cost), constraints=tight, generations=1, warm=first.evaluated)
    assert all(tight.satisfied(e.arch, cost) for e in boxed.run().evaluated)


# ---- files ----------------------------------------------------------------------------------------
def _front(nano, tmp_path, objectives):
    space, cost = nano
    result = nsga2(nano, MOFitness(cost), objectives).run()
    members = front_entries(result.evaluated, objectives)
    final = {e.arch: (e.fitness - 1.0, 99.0) for e in members}
    return result, build_front(
        result.evaluated,
        [r.generation for r in result.history],
        objectives,
        objectives.reference(space, cost),
        final_split="val",
        final=final,
        space=space.to_dict(),
    )


def test_front_files_round_trip(nano, tmp_path):
    space, cost = nano
    table = toy_table(space)
    objectives = Objectives(("acc", "latency", "params"), table)
    result, front = _front(nano, tmp_path, objectives)
    assert len(front.members) >= 2
    assert [m.name for m in front.members] == [f"f{i:02d}" for i in range(len(front.members))]
    latencies = [m.latency_ms for m in front.members]
    assert latencies == sorted(latencies)  # named by increasing first cost
    assert all(m.latency_ms == table.predict(m.arch) for m in front.members)
    write_front(tmp_path, front)
    assert read_front(tmp_path) == front == read_front(tmp_path / "front.json")
    from_csv = read_front_members(tmp_path / "front.csv")
    assert [m.arch for m in from_csv] == [m.arch for m in front.members]
    assert [(m.name, m.acc, m.latency_ms, m.final_acc1) for m in from_csv] == [
        (m.name, m.acc, m.latency_ms, m.final_acc1) for m in front.members
    ]
    header = front_csv(front).splitlines()[0].split(",")
    depth = max(space.depth)
    assert header[:3] == ["name", "embed_dim", "depth"]
    assert header[3 : 3 + 2 * depth] == [f"heads_{i}" for i in range(depth)] + [
        f"mlp_ratio_{i}" for i in range(depth)
    ]
    data = json.loads((tmp_path / "front.json").read_text())
    assert data["reference"] == dict(zip(objectives.names, objectives.reference(space, cost)))
    assert set(data["hypervolume"]) == {"search", "val"}
    assert [h["generation"] for h in data["hypervolume_history"]] == list(
        range(NSGA["generations"])
    )
    hvs = [h["hypervolume"] for h in data["hypervolume_history"]]
    assert hvs == sorted(hvs) and hvs[-1] == data["hypervolume"]["search"]  # an archive: monotone
    with pytest.raises(ConfigError, match="not a readable front.json"):
        read_front(tmp_path / "nope")


def test_results_json_has_one_writer_and_one_reader(nano, tmp_path):
    space, cost = nano
    objectives = Objectives(("acc", "params"))
    result, front = _front(nano, tmp_path, objectives)
    top = result.top_k(3)
    final = {e.arch: FinalScore(e.fitness - 2, 90.0) for e in top}
    facts = RunFacts(checkpoint="ck", space="nano", fitness_split="search", final_split="val")
    report = SearchReport(result, facts, 3, final, front)
    write_results(tmp_path / "results.json", report)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["best"]["val_acc1"] == final[result.best_arch].acc1
    assert [e["val_acc1"] for e in data["final"]] == [final[e.arch].acc1 for e in top]
    back = read_results(tmp_path / "results.json")
    assert back.to_dict() == data and back.front == front
    outside = next(m for m in front.members if m.arch not in final)  # a front member only
    found = back.finalist(outside.arch)
    assert found.source == f"front {outside.name}" and found.score.acc1 == outside.final_acc1
    assert back.finalist(top[1].arch).source == "final[1]"
    assert back.finalist(Arch.uniform(64, 4, 2, 2.0)) is None


def test_old_results_files_still_read():
    old = json.loads((FIX / "results_complete.json").read_text())
    report = read_results(FIX / "results_complete.json")
    assert old["version"] == 1 and report.front is None
    assert report.facts.checkpoint == old["checkpoint"] and report.top_k == len(old["final"])
    best = Arch.from_dict(old["best"]["arch"])
    assert report.finalist(best).score == FinalScore(
        old["best"]["val_acc1"], old["best"]["val_acc5"]
    )
    assert [e.arch.to_dict() for e in report.result.evaluated] == [
        e["arch"] for e in old["evaluated"]
    ]


def test_results_files_that_are_not_are_refused(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not a readable results.json"):
        read_results(bad)
    bad.write_text('{"format": "ovo.search.state"}')
    with pytest.raises(ConfigError, match="not a search's results.json"):
        read_results(bad)
    bad.write_text('{"format": "ovo.search.result", "version": 99}')
    with pytest.raises(ConfigError, match="version 99"):
        read_results(bad)
