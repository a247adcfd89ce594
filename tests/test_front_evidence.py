"""The front-search evidence driver (studies/front_evidence.py): its score cache changes no
search, its hypervolume curve and thresholds on hand-computed points, and a small end-to-end
run on the micro fixture whose report states the targets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ovo.budget import Constraints
from ovo.search.fitness import FullFitness
from ovo.search.loop import Search, SearchSettings
from ovo.search.objectives import Objectives
from ovo.space import load_space
from ovo.supernet.config import ViTConfig
from ovo.supernet.costs import CostModel

from helpers import load_bench_script

FE = load_bench_script("front_evidence.py", "ovo_front_evidence", "studies")
FIX = Path(__file__).parent / "fixtures" / "pre_refactor_465a06b" / "last.ckpt"


def test_curve_is_the_hypervolume_of_each_prefix_by_hand():
    # minimised, normalised points in the unit box; reference (1, 1)
    points = [(0.5, 0.5), (0.6, 0.6), (0.2, 0.8), (0.5, 0.5), (0.1, 0.1)]
    # 0.25; dominated: 0.25; + (0.5-0.2)*(1-0.8) = 0.06 -> 0.31; duplicate: 0.31; 0.81
    assert FE.curve(points) == pytest.approx([0.25, 0.25, 0.31, 0.31, 0.81], abs=1e-12)
    assert FE.first_reaching([0.1, 0.3, 0.3, 0.9], 0.3) == 2
    assert FE.first_reaching([0.1, 0.3], 0.5) is None


class FakeEvaluator:
    """Deterministic hits per arch; counts what it is asked to score."""

    def __init__(self) -> None:
        self.asked = 0

    def evaluate(self, archs):
        self.asked += len(archs)
        out = []
        for a in archs:
            hits = (a.embed_dim * 7 + sum(a.num_heads) * 13 + int(sum(a.mlp_ratio) * 10)) % 97
            out.append(type("S", (), {"hits1": hits, "num_images": 97})())
        return out


def _search(fitness, strategy: str, tmp: Path | None = None) -> list:
    space = load_space("nano")
    cost = CostModel(ViTConfig(img_size=32, patch_size=8, num_classes=10), space.head_dim)
    settings = SearchSettings(
        strategy=strategy, population=8, generations=3, parents=4, mutations=4, crossovers=4
    )
    search = Search(
        space,
        cost,
        Constraints(),
        FullFitness(fitness, 97),
        settings,
        objectives=Objectives(("acc", "params")),
    )
    return [(e.arch, e.fitness) for e in search.run().evaluated]


@pytest.mark.parametrize("strategy", ["evolution", "nsga2"])
def test_the_score_cache_changes_no_search_and_scores_an_arch_once(tmp_path, strategy):
    plain = FakeEvaluator()

    def fitness(archs):
        return [100.0 * (s.hits1 / s.num_images) for s in plain.evaluate(archs)]

    expected = _search(fitness, strategy)
    evaluator = FakeEvaluator()
    cache = FE.ScoreCache(tmp_path / "scores.jsonl", {"weights": "w"}, evaluator)
    assert _search(cache, strategy) == expected
    assert evaluator.asked == len(expected)
    # a second process reads the file: the same search scores nothing
    again = FakeEvaluator()
    reread = FE.ScoreCache(tmp_path / "scores.jsonl", {"weights": "w"}, again)
    assert _search(reread, strategy) == expected and again.asked == 0
    with pytest.raises(SystemExit, match="scored with"):
        FE.ScoreCache(tmp_path / "scores.jsonl", {"weights": "other"}, again)


def test_worker_and_report_on_the_micro_fixture(tmp_path, monkeypatch):
    monkeypatch.setattr(FE, "OBJECTIVES", {"quickstart": (("acc", "params"),)})
    args = [
        "--work",
        str(tmp_path / "work"),
        "--records",
        str(tmp_path / "rec"),
        "--population",
        "4",
        "--generations",
        "2",
        "--inner-evals",
        "40",
    ]
    FE.main(["--worker", "quickstart", "--ckpt", str(FIX), *args])
    runs = sorted(p.name for p in (tmp_path / "rec" / "quickstart").glob("*-seed*.json"))
    assert len(runs) == 13  # 4 strategies x 3 seeds + the reference sample's fourth random run
    record = json.loads((tmp_path / "rec" / "quickstart" / "linas-params-seed0.json").read_text())
    assert len(record["evaluations"]) == 8 and len(record["linas_loops"]) == 1
    # finished runs are skipped: a second worker scores nothing
    FE.main(["--worker", "quickstart", "--ckpt", str(FIX), *args])
    again = json.loads((tmp_path / "rec" / "quickstart" / "linas-params-seed0.json").read_text())
    assert again == record
    report = FE.report(FE.parse_args(["--records", str(tmp_path / "rec")]))["quickstart"]
    params = report["objectives"]["params"]
    assert 0 < params["reference_hv"] <= 1
    # every run's final hypervolume is at most the reference front's (its union)
    for strategy, table in params["hv"].items():
        for n, (mean, _) in table.items():
            assert mean <= 1 + 1e-12, (strategy, n)
    assert math.isfinite(params["hv"]["nsga2"][min(params["hv"]["nsga2"])][0])
    # the fronts after each generation, scored on val: members chosen on the search split
    val = params["val"]
    assert val["split"] == "val" and val["reference_hv"] > 0
    assert sorted(val["hv"]) == ["evolution", "linas", "nsga2", "random"]
    assert "| evaluations |" in FE.markdown({"quickstart": report})
