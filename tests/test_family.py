"""``python -m ovo.export family=<search dir>``: the front shipped as a family (a folder per
member, ``family.json``, a card), budgets choosing members, the elastic folder whose
``load_slice`` equals each member's own export bit for bit, and each bad input in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ovo.errors import ConfigError
from ovo.export import load_exported, load_slice
from ovo.export.elastic import SLICES
from ovo.search.front import read_front

from helpers import run_module

FIX = Path(__file__).parent / "fixtures" / "pre_refactor_465a06b"
CKPT = FIX / "last.ckpt"
SEARCH = ["population=6", "parents=2", "mutations=2", "crossovers=2", "wandb.enabled=false"]
SEARCH += [
    "constraints.params_max=20k",
    "strategy=nsga2",
    "generations=2",
    "objectives=[acc,params]",
]


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("family")
    args = [f"ckpt_path={CKPT}", f"paths.log_dir={out}", *SEARCH, "name=f"]
    assert run_module("ovo.search", args) == 0
    return out / "search" / "f"


def export(search: Path, out: Path, *extra: str) -> int:
    args = [f"ckpt_path={CKPT}", f"family={search}", f"out_dir={out}", f"hydra.run.dir={out}_run"]
    return run_module("ovo.export", [*args, "verify_batch=2", *extra])


@pytest.fixture(scope="module")
def family(search, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "fam"
    assert export(search, out, "elastic=true") == 0
    return out


def test_the_family_index_matches_the_members_files(search, family):
    front = read_front(search)
    index = json.loads((family / "family.json").read_text())
    assert [m["name"] for m in index["members"]] == [m.name for m in front.members]
    for entry, member in zip(index["members"], front.members):
        folder = family / entry["folder"]
        config = json.loads((folder / "config.json").read_text())
        assert config["arch"] == member.arch.to_dict() == entry["arch"]
        assert config["params"] == entry["params"] == member.params
        assert sorted(p.name for p in folder.iterdir()) == entry["files"]
        assert entry["final_acc1"] == member.final_acc1 and entry["acc_search"] == member.acc
        # the member's card carries its front accuracy on the final split
        assert f"{member.final_acc1:.2f}%" in (folder / "README.md").read_text()
    card = (family / "README.md").read_text()
    assert all(f"| {m.name} |" in card for m in front.members)


def test_load_slice_equals_each_members_own_export_bit_for_bit(search, family):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for member in read_front(search).members:
        with torch.no_grad():
            own = load_exported(family / member.name)(x)
            sliced = load_slice(family / "elastic", member.name)(x)
        assert torch.equal(own, sliced), member.name


def test_load_slice_names_the_slices_it_has(family):
    with pytest.raises(ConfigError, match="has no slice 'nope'; its slices: f00"):
        load_slice(family / "elastic", "nope")


def test_a_slice_outside_the_space_is_refused(family, tmp_path):
    copy = tmp_path / "elastic"
    shutil.copytree(family / "elastic", copy)
    lines = (copy / SLICES).read_text().splitlines()
    fields = lines[1].split(",")
    fields[1] = "999"  # an embed dim the space does not have
    (copy / SLICES).write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]) + "\n")
    with pytest.raises(ConfigError, match="is not an arch of space"):
        load_slice(copy, fields[0])


def test_budgets_choose_the_best_member_within_each(search, tmp_path, capsys):
    front = read_front(search).members
    cap = sorted(m.params for m in front)[len(front) // 2]
    out = tmp_path / "b"
    assert export(search, out, f"family.budgets=[params:{cap}]") == 0
    index = json.loads((out / "family.json").read_text())
    within = [m for m in front if m.params <= cap]
    best = max(within, key=lambda m: (m.acc, -front.index(m)))
    assert [m["name"] for m in index["members"]] == [best.name]
    assert index["members"][0]["budgets"] == [f"params:{cap}"]
    assert not (out / "elastic").exists()


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["family.budgets=[params:1]"], "no member of the front is within it"),
        (["family.budgets=[size:5M]"], "write <cost>:<max>"),
        (["family.budgets=[latency:5]"], "this front has no latency"),
    ],
)
def test_bad_budgets_are_one_line_and_write_nothing(search, tmp_path, capsys, extra, needle):
    out = tmp_path / "x"
    assert export(search, out, *extra) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("ovo: error:")]
    assert len(lines) == 1 and needle in lines[0]
    assert not out.exists()


def test_a_search_without_a_front_is_one_line(search, tmp_path, capsys):
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(FIX / "results_complete.json", old / "results.json")  # an ovo before fronts
    assert export(old, tmp_path / "x") == 2
    err = capsys.readouterr().err
    assert "has no front.json" in err and "search again" in err
    assert not (tmp_path / "x").exists()


def test_choose_members_takes_the_most_accurate_within_each_budget():
    from ovo.commands.export import choose_members
    from ovo.search.front import Front, FrontMember
    from ovo.space import Arch

    def member(i: int, params: int, acc: float, latency: float | None) -> FrontMember:
        return FrontMember(
            f"f{i:02d}", Arch(16 + 8 * i, (1,), (1.0,)), acc, params, 0, latency, 0, 0
        )

    # not a strict front (acc does not rise with params): the cheapest fit is not the best
    members = (member(0, 10, 50.0, 1.0), member(1, 20, 70.0, 3.0), member(2, 30, 60.0, 2.0))
    front = Front(("acc", "params"), (0.0, 40.0), members, 0.5)
    names = lambda budgets: [(m.name, b) for m, b in choose_members(front, budgets)]  # noqa: E731
    assert names(["params:25"]) == [("f01", ["params:25"])]
    assert names(["params:35", "params:25"]) == [("f01", ["params:35", "params:25"])]  # once
    assert names(["latency:2.5"]) == [("f02", ["latency:2.5"])]
    assert names(["params:15", "latency:2.5+params:35"]) == [
        ("f00", ["params:15"]),
        ("f02", ["latency:2.5+params:35"]),
    ]
    assert names([]) == [("f00", []), ("f01", []), ("f02", [])]
