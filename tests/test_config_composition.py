"""How the commands' configs are composed (``conf/``): shared blocks live once, in a group.

- Every command has its own run directory, and for search, rank and latency that directory is
  the resume key (``search/${name}``: the same command again resumes from
  ``search_state.json``), so it is pinned as the resolved path the command writes to.
- The blocks several commands share are config groups, each written once: ``eval/``
  (evaluate, search, rank, export), ``torch_compile/`` (``compile`` + ``compile_options``:
  train, search, evaluate), ``wandb/`` (search, rank) and the run settings ``hydra/``
  (``default``: train; ``timestamped``: evaluate, export; ``named``: search, rank, latency).
- What the code sees did not change when the blocks were moved into groups: every command's
  composed config, resolved, against ``fixtures/config_trees_82d8498.json``, dumped by
  :func:`config_trees` from the configs of commit 82d8498 (before the groups). Additions are
  allowed; a key that disappears or a value that changes fails. A default changed on purpose:
  rewrite the fixture in the same commit with ``python tests/test_config_composition.py``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from ovo.paths import conf_dir

from helpers import flat_keys

FIXTURE = Path(__file__).parent / "fixtures" / "config_trees_82d8498.json"
ENV = {"OVO_DATA_DIR": "/DATA", "OVO_LOG_DIR": "/LOGS"}
_NOW = re.compile(r"\$\{now:([^}]*)\}")


def compose_resolved(config: str, overrides: list[str], conf: Path | None = None):
    """``conf/<config>.yaml`` composed as the command composes it, its ``hydra`` node included,
    resolved with ``${now:FMT}`` read as the text ``<now:FMT>`` (the resolver is left alone);
    a value that cannot be resolved outside a run (``hydra.job.num``) is kept as written."""
    with initialize_config_dir(str(conf or conf_dir()), version_base="1.3"):
        cfg = compose(config, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return OmegaConf.create(_freeze_now(OmegaConf.to_container(cfg, resolve=False)))


def _freeze_now(node):
    if isinstance(node, dict):
        return {k: _freeze_now(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_freeze_now(v) for v in node]
    return _NOW.sub(r"<now:\1>", node) if isinstance(node, str) else node


def _resolved(node, key):
    try:
        return OmegaConf.select(node, key, throw_on_resolution_failure=True)
    except Exception:  # noqa: BLE001 - e.g. ${hydra.job.num} outside a multirun
        return "RAW:" + str(flat_keys(OmegaConf.to_container(node, resolve=False))[key])


HYDRA_KEPT = ("run.dir", "sweep.dir", "sweep.subdir", "job.chdir")


def config_tree(config: str, overrides: list[str], conf: Path | None = None) -> dict:
    """What the code of one command sees: its config (flat, resolved) and its run settings."""
    cfg = compose_resolved(config, overrides, conf)
    hydra = {k: _resolved(cfg.hydra, k) for k in HYDRA_KEPT}
    del cfg["hydra"]
    tree = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return {"config": flat_keys(tree), "hydra": hydra}


def cases(conf: Path) -> list[str]:
    """Every command with its defaults (checkpoint commands with a checkpoint path), train with
    each experiment, export with the onnx shorthand."""
    experiments = sorted(p.stem for p in (conf / "experiment").glob("*.yaml"))
    return [
        "train",
        *[f"train experiment={e}" for e in experiments],
        "search ckpt_path=x",
        "evaluate ckpt_path=x",
        "export ckpt_path=x",
        "export ckpt_path=x onnx=true",
        "rank ckpt_path=x",
        "latency",
    ]


def config_trees(conf: Path) -> dict[str, dict]:
    os.environ.update(ENV)
    return {case: config_tree(case.split()[0], case.split()[1:], conf) for case in cases(conf)}


@pytest.fixture
def fixed_env(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


# ---- run directories ---------------------------------------------------------------------------
NOW = "<now:%Y-%m-%d_%H-%M-%S>"
# (command, overrides, its run directory under paths.log_dir=/L)
RUN_DIRS = [
    ("train", [], f"/L/train/runs/{NOW}"),
    ("train", ["experiment=quickstart"], f"/L/quickstart/runs/{NOW}"),
    ("search", ["ckpt_path=x"], "/L/search/default"),
    ("search", ["ckpt_path=x", "name=qs"], "/L/search/qs"),
    ("rank", ["ckpt_path=x", "name=r1"], "/L/rank/r1"),
    ("latency", ["name=cpu1"], "/L/latency/cpu1"),
    ("evaluate", ["ckpt_path=x"], f"/L/evaluate/{NOW}"),
    ("export", ["ckpt_path=x"], f"/L/export/{NOW}"),
]


@pytest.mark.parametrize(("config", "overrides", "run_dir"), RUN_DIRS)
def test_each_command_keeps_its_own_run_directory(config, overrides, run_dir):
    cfg = compose_resolved(config, ["paths.log_dir=/L", *overrides])
    assert cfg.hydra.run.dir == run_dir
    assert cfg.hydra.job.chdir is False  # outputs are found from where the command was typed


def test_train_sweeps_get_a_directory_per_job():
    cfg = compose_resolved("train", ["paths.log_dir=/L", "experiment=quickstart"])
    assert cfg.hydra.sweep.dir == f"/L/quickstart/multiruns/{NOW}"
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}"


# ---- export's two spellings --------------------------------------------------------------------
def test_onnx_true_is_shorthand_for_adding_onnx_to_format():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from ovo.commands.export import check_settings

    def formats(*overrides):
        return check_settings(compose_resolved("export", ["ckpt_path=x", *overrides]))[0]

    assert formats() == ["safetensors"]
    assert formats("onnx=true") == formats("format=[safetensors,onnx]") == ["safetensors", "onnx"]
    assert formats("onnx=true", "format=[pt2]") == ["safetensors", "pt2", "onnx"]


# ---- what the code sees ------------------------------------------------------------------------
def test_composed_configs_resolve_as_before_the_groups(fixed_env):
    pinned = json.loads(FIXTURE.read_text())
    for case, before in pinned.items():
        now = config_tree(case.split()[0], case.split()[1:])
        for part in ("config", "hydra"):
            missing = sorted(set(before[part]) - set(now[part]))
            assert not missing, f"{case}: {part} keys removed: {missing}"
            changed = {k: (v, now[part][k]) for k, v in before[part].items() if now[part][k] != v}
            assert not changed, f"{case}: {part} values changed (before, now): {changed}"


# ---- each shared block is written once ---------------------------------------------------------
# the leaf keys of the blocks that used to be copied into several command configs
BLOCKS = {
    "eval": [
        "eval.accelerator",
        "eval.devices",
        "eval.num_nodes",
        "eval.strategy",
        "eval.precision",
        "eval.cache",
        "eval.max_batches",
    ],
    "compile": [
        "compile",
        "compile_options.backend",
        "compile_options.mode",
        "compile_options.warmup",
    ],
    "wandb": ["wandb.enabled", "wandb.offline", "wandb.project"],
    "hydra job": ["hydra.job.chdir"],
}


def _package(path: Path, text: str) -> str:
    """Where a config file's keys land in the composed config (Hydra's package rules)."""
    header = re.search(r"^# @package (\S+)", text, re.M)
    if header:
        return "" if header[1] == "_global_" else header[1]
    group = path.parent.relative_to(conf_dir())
    return "" if str(group) == "." else ".".join(group.parts)


def defined_keys() -> dict[str, set[str]]:
    """{config file: the dotted keys it sets in the composed config}."""
    out = {}
    for path in sorted(conf_dir().rglob("*.yaml")):
        text = path.read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            continue
        data.pop("defaults", None)
        package = _package(path, text)
        prefix = f"{package}." if package else ""
        out[str(path.relative_to(conf_dir()))] = {prefix + key for key in flat_keys(data)}
    return out


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_each_formerly_copied_block_is_written_once(block):
    keys = set(BLOCKS[block])
    counts = Counter({f: len(keys & have) for f, have in defined_keys().items()})
    writers = sorted(f for f, n in counts.items() if n > 1 or n == len(keys))
    assert len(writers) == 1, f"the {block} block is written in {writers}: compose its group"
    # a command may change one of its values (search and rank set eval.cache), not copy it
    assert all(n <= 1 for f, n in counts.items() if f not in writers), counts


def test_run_directories_are_set_only_in_the_hydra_group():
    setters = sorted(f for f, have in defined_keys().items() if "hydra.run.dir" in have)
    assert setters and all(f.startswith("hydra/") for f in setters), setters


def test_the_search_keeps_its_flat_keys():
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("search", overrides=["ckpt_path=x"])
    flat = ("population", "generations", "parents", "mutations", "crossovers", "mutation_prob")
    assert all(key in cfg and not OmegaConf.is_dict(cfg[key]) for key in (*flat, "top_k"))


if __name__ == "__main__":  # rewrite the fixture from the configs of this checkout
    FIXTURE.write_text(json.dumps(config_trees(conf_dir()), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({len(json.loads(FIXTURE.read_text()))} cases)", file=sys.stderr)
