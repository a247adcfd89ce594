"""Search that costs less and knows latency: successive halving's bookkeeping, the stratified
order of the fitness split, latency tables, and both through ``ovo.search`` end to end."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from ovo.data import FakeDataModule
from ovo.data.base import stratified_order
from ovo.errors import ConfigError, InfeasibleBudgetError
from ovo.latency import LatencyTable
from ovo.search import Constraints, Search, SearchSettings, check_feasible
from ovo.search.fitness import Halving, HalvingSettings, optimistic
from ovo.search.state import upgrade_state_v1
from ovo.space import Arch, SearchSpace, load_space, mlp_hidden
from ovo.supernet.config import ViTConfig
from ovo.supernet.costs import CostModel

from helpers import run_module

FIX = Path(__file__).parent / "fixtures" / "pre_refactor_465a06b"


# ---- the stratified order ------------------------------------------------------------------
def test_every_prefix_of_the_stratified_order_is_class_balanced():
    labels = np.repeat(np.arange(10), 100)  # stored class by class, as image folders are
    order = stratified_order(labels, seed=3)
    assert sorted(order.tolist()) == list(range(1000))
    for rung in HalvingSettings(eta=3, min_images=10).rungs(1000):
        counts = np.bincount(labels[order[:rung]], minlength=10)
        assert counts.max() - counts.min() <= 1, (rung, counts)
    assert not np.array_equal(order, stratified_order(labels, seed=4))
    assert np.array_equal(order, stratified_order(labels, seed=3))


def test_the_search_loader_reads_the_split_in_that_order():
    dm = FakeDataModule(num_train=200, num_classes=4, search_per_class=6, batch_size=8)
    plain = [int(y) for _, ys in dm.search_dataloader() for y in ys]
    strat = [int(y) for _, ys in dm.search_dataloader(stratified_seed=0) for y in ys]
    assert sorted(plain) == sorted(strat) and len(strat) == 24
    for k in range(4, 25, 4):
        assert np.bincount(strat[:k], minlength=4).tolist() == [k // 4] * 4


# ---- successive halving ------------------------------------------------------------------------
class RecordingSplit:
    """A synthetic fitness split: arch ``a`` gets image ``i`` right iff ``u(a, i) < p(a)``;
    records every (arch, start, stop) it is asked to score."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.calls: list[tuple[Arch, int, int]] = []

    @staticmethod
    def quality(arch: Arch) -> float:
        return 0.2 + 0.6 * (arch.embed_dim / 128) * (sum(arch.mlp_ratio) / (4 * arch.depth))

    def hit(self, arch: Arch, i: int) -> bool:
        return random.Random(f"{arch.short()}/{i}").random() < self.quality(arch)

    def __call__(self, archs: list[Arch], start: int, stop: int) -> list[int]:
        assert 0 <= start < stop <= self.total
        for a in archs:
            self.calls.append((a, start, stop))
        return [sum(self.hit(a, i) for i in range(start, stop)) for a in archs]


@pytest.fixture
def nano():
    space = load_space("nano")
    return space, CostModel(ViTConfig(img_size=32, patch_size=8, num_classes=10), 64)


def test_halving_bookkeeping(nano):
    space, cost = nano
    split = RecordingSplit(1000)
    settings = HalvingSettings(eta=3, min_images=100, z=2.0)
    assert settings.rungs(1000) == [111, 333, 1000]
    race = Halving(split, 1000, settings)
    search = Search(
        space,
        cost,
        None,
        race,
        SearchSettings(population=30, generations=4, parents=5, mutations=10, crossovers=10),
    )
    result = search.run()
    ranges: dict[Arch, list[tuple[int, int]]] = defaultdict(list)
    for arch, start, stop in split.calls:
        ranges[arch].append((start, stop))
    for e in result.evaluated:
        spans = ranges[e.arch]
        # contiguous from image 0, never overlapping: no image is scored twice for one arch
        assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert spans[-1][1] == e.images
        assert e.complete == (e.images == 1000)
        assert e.fitness == pytest.approx(
            100 * sum(split.hit(e.arch, i) for i in range(e.images)) / e.images
        )
    assert result.images_scored == sum(stop - start for _, start, stop in split.calls)
    assert result.images_scored < 0.3 * 1000 * len(result.evaluated)
    parents_pool = [e for e in result.evaluated if e.complete]
    assert result.best in parents_pool and all(e.complete for e in result.top_k(5))
    # generation 0 (no top-k yet): exactly the best third of each rung goes on, ties included
    gen0 = [e for e in result.evaluated if e.generation == 0]
    assert len(gen0) == 30
    assert sum(e.images >= 333 for e in gen0) >= 10 and sum(e.complete for e in gen0) >= 4


def test_racing_drops_archs_that_cannot_make_the_top_k():
    archs = [Arch(64, (2,) * 4, (2.0,) * 4), Arch(128, (4,) * 6, (4.0,) * 6)]
    split = RecordingSplit(900)
    race = Halving(split, 900, HalvingSettings(eta=2, min_images=100, z=2.0))
    weak, strong = race.race(archs, threshold=99.0)  # nobody can reach 99%
    assert not weak.complete and not strong.complete and weak.images == strong.images
    weak, strong = race.race(archs, threshold=None)
    assert strong.complete and not weak.complete
    assert optimistic(50, 100, 0.0) == pytest.approx(50.0) and optimistic(50, 100, 2.0) > 55.0


def test_an_interrupted_halving_search_resumes_to_the_same_result(nano, tmp_path):
    space, cost = nano
    settings = SearchSettings(population=12, generations=4, parents=3, mutations=4, crossovers=4)

    def search(split, state=None):
        race = Halving(split, 600, HalvingSettings(eta=3, min_images=50))
        return Search(space, cost, None, race, settings, state_path=state)

    reference = search(RecordingSplit(600)).run()

    class Crash(RecordingSplit):
        def __call__(self, archs, start, stop):
            if len(self.calls) > 40:
                raise RuntimeError("simulated interruption")
            return super().__call__(archs, start, stop)

    state = tmp_path / "state.json"
    with pytest.raises(RuntimeError):
        search(Crash(600), state).run()
    assert json.loads(state.read_text())["settings"]["fitness"]["mode"] == "halving"
    again = RecordingSplit(600)
    resumed = search(again, state).run()
    assert resumed.to_dict() == reference.to_dict()
    done = {Arch.from_dict(e["arch"]) for e in json.loads(state.read_text())["evaluated"]}
    assert done == {e.arch for e in reference.evaluated}


def test_a_version_1_state_is_upgraded_to_full_fitness():
    state = json.loads((FIX / "search_state_complete.json").read_text())
    assert state["version"] == 1
    upgraded = upgrade_state_v1(state)
    assert upgraded["version"] == 2 and upgraded["settings"]["fitness"] == {"mode": "full"}


# ---- latency tables ----------------------------------------------------------------------------
MICRO = SearchSpace([16, 24], [1, 2], [1, 2], [1.0, 2.0], head_dim=8, name="micro")
MICRO_CFG = ViTConfig(img_size=16, patch_size=8, num_classes=5)


def toy_table(space=MICRO, device="cpu: test") -> LatencyTable:
    blocks = {(e, h, m): 0.01 * e + 0.1 * h + 0.001 * m for e, h, m in space.block_shapes()}
    conditions = {
        "device": device,
        "device_type": "cpu",
        "threads": 1,
        "dtype": "float32",
        "batch": 1,
        "tokens": MICRO_CFG.num_tokens,
        "space": space.to_dict(),
        "model": {
            "img_size": 16,
            "patch_size": 8,
            "in_chans": 3,
            "num_classes": 5,
            "global_pool": "token",
            "head_dim": 8,
        },
    }
    stems = {e: 0.5 + 0.001 * e for e in space.embed_dim}
    return LatencyTable(conditions, stems, blocks, {e: 0.2 for e in space.embed_dim}, "toy.json")


def test_prediction_is_the_sum_of_the_parts_and_round_trips():
    table = toy_table()
    arch = Arch(24, (2, 1), (1.0, 2.0))
    want = table.stem_ms[24] + table.head_ms[24]
    want += (
        table.block_ms[(24, 2, mlp_hidden(24, 1.0))] + table.block_ms[(24, 1, mlp_hidden(24, 2.0))]
    )
    assert table.predict(arch) == pytest.approx(want)
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())), "x")
    assert again == table
    rng = random.Random(0)
    brute = min(table.predict(MICRO.sample(rng)) for _ in range(3000))
    assert table.fastest(MICRO) == pytest.approx(min(brute, table.fastest(MICRO)))
    assert table.fastest(MICRO) <= brute + 1e-12


def test_tables_of_another_space_model_or_device_are_refused():
    cost = CostModel(MICRO_CFG, 8)
    table = toy_table()
    table.check_matches(MICRO, MICRO_CFG, 8, "cpu")
    with pytest.raises(ConfigError, match="measured for space 'micro'"):
        table.check_matches(load_space("nano"), MICRO_CFG, 8)
    with pytest.raises(ConfigError, match="img_size: 16 there, 32 here"):
        table.check_matches(MICRO, ViTConfig(img_size=32, patch_size=8, num_classes=5), 8)
    with pytest.raises(ConfigError, match="not on a 'H100' device"):
        table.check_matches(MICRO, MICRO_CFG, 8, "H100")
    del cost


def test_latency_budget_and_its_errors(tmp_path):
    cost = CostModel(MICRO_CFG, 8)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(toy_table().to_dict()))
    table = toy_table()
    budget = table.fastest(MICRO) * 1.3
    c = Constraints(latency_ms_max=budget, latency_table=str(path))
    rng = random.Random(0)
    for _ in range(50):
        arch = MICRO.sample(rng)
        assert c.satisfied(arch, cost) == (table.predict(arch) <= budget)
    assert c.table.predict(check_feasible(MICRO, cost, c)) <= budget
    too_fast = Constraints(latency_ms_max=table.fastest(MICRO) * 0.9, latency_table=str(path))
    with pytest.raises(InfeasibleBudgetError, match="fastest arch is predicted at"):
        check_feasible(MICRO, cost, too_fast)
    with pytest.raises(ConfigError, match="needs constraints.latency_table"):
        Constraints(latency_ms_max=3.0)
    with pytest.raises(ConfigError, match="latency_ms_max is not"):
        Constraints(latency_table=str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        Constraints(latency_ms_max=3.0, latency_table=str(tmp_path / "nope.json"))


# ---- end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from ovo.commands.train import train

    from helpers import FAST, compose_cfg

    out = tmp_path_factory.mktemp("trained")
    train(
        compose_cfg(
            "train",
            [*FAST, "trainer.max_epochs=1", "data.num_train=256", "data.search_per_class=12"],
            out,
        )
    )
    return out / "checkpoints" / "last.ckpt"


SMALL = ["population=8", "generations=3", "parents=3", "mutations=3", "crossovers=3"]


def test_search_with_halving_and_a_latency_budget_end_to_end(checkpoint, tmp_path, capsys):
    assert (
        run_module(
            "ovo.latency",
            [
                f"ckpt_path={checkpoint}",
                "repeats=2",
                "warmup=1",
                "verify=2",
                f"paths.log_dir={tmp_path}",
            ],
        )
        == 0
    )
    table_path = tmp_path / "latency" / "default" / "latency_table.json"
    table = LatencyTable.from_dict(json.loads(table_path.read_text()))
    assert len(table.block_ms) == 27 and table.conditions.tokens == 17
    assert "prediction error" in capsys.readouterr().out
    space = load_space("nano")
    budget = (table.fastest(space) + table.predict(space.max_arch)) / 2
    args = [
        f"ckpt_path={checkpoint}",
        f"paths.log_dir={tmp_path}",
        "name=both",
        "wandb.enabled=false",
        "fitness=halving",
        "halving.min_images=20",
        f"constraints.latency_ms_max={budget}",
        f"constraints.latency_table={table_path}",
        *SMALL,
    ]
    assert run_module("ovo.search", args) == 0
    printed = capsys.readouterr().out
    assert "arch-images scored (halving" in printed and "ms predicted" in printed
    results = json.loads((tmp_path / "search" / "both" / "results.json").read_text())
    assert results["fitness"]["mode"] == "halving" and results["fitness"]["split_images"] == 120
    assert results["images_scored"] == sum(e["images"] for e in results["evaluated"])
    assert results["images_scored"] < 120 * results["num_evaluated"]
    assert all(table.predict(Arch.from_dict(e["arch"])) <= budget for e in results["evaluated"])
    assert results["best"]["latency_ms_predicted"] <= budget and results["best"]["complete"]


def test_latency_mistakes_are_one_line(checkpoint, tmp_path, capsys):
    other = tmp_path / "micro.json"
    other.write_text(json.dumps(toy_table().to_dict()))
    base = [f"ckpt_path={checkpoint}", f"paths.log_dir={tmp_path}", "wandb.enabled=false", *SMALL]
    for extra, needle in (
        (
            [f"constraints.latency_table={other}", "constraints.latency_ms_max=5"],
            "measured for space 'micro'",
        ),
        (
            [f"constraints.latency_table={tmp_path}/no.json", "constraints.latency_ms_max=5"],
            "does not exist",
        ),
        (["constraints.latency_ms_max=5"], "needs constraints.latency_table"),
        (["fitness=sometimes"], "fitness='sometimes'"),
        (["halving.eta=1", "fitness=halving"], "halving.eta=1"),
    ):
        assert run_module("ovo.search", [*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("ovo: error:")]
        assert len(lines) == 1 and needle in lines[0], (extra, err[-1500:])
    for extra, needle in ((["device=cuda:7"], "no CUDA GPU"), (["dtype=int8"], "dtype=int8")):
        assert run_module("ovo.latency", [f"ckpt_path={checkpoint}", *extra]) == 2
        assert needle in capsys.readouterr().err


@pytest.mark.slow  # three real commands in subprocesses
def test_the_search_cost_benchmark_runs(checkpoint, tmp_path):

    from helpers import load_bench_script

    bench = load_bench_script("search_cost.py", "search_cost", "studies")
    report = bench.main(
        [
            "--ckpt",
            str(checkpoint),
            "--seeds",
            "0",
            "--params-max",
            "1G",
            "--population",
            "8",
            "--generations",
            "2",
            "--extra",
            "halving.min_images=20",
            "--extra",
            "parents=3",
            "--extra",
            "mutations=2",
            "--extra",
            "crossovers=2",
            "--space",
            "nano",
            "--img-size",
            "32",
            "--patch-size",
            "8",
            "--verify",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    row = report["halving"]["rows"][0]
    assert row["halving_images"] < row["full_images"] and 0 < row["top10_overlap"] <= 1
    assert report["latency"]["subnets"] == 2 and (tmp_path / "report.json").is_file()
