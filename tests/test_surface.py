"""Golden tests of the user-facing surface, pinned at commit 465a06b (before the glue refactor).

What users type and what files they keep must not change under them: the README's command lines,
the config keys and their defaults, the config groups, what a checkpoint holds, and the
``results.json`` / search-state schemas. Additions are allowed; nothing pinned may disappear or
change its default. ``golden/surface_465a06b.json`` was dumped from the code at that commit.

The commands run in-process through ``runpy`` exactly as ``python -m ovo.<command>`` runs them,
so these tests do not depend on where a command's code lives.

Documented commands: the lines of the fenced ``bash`` blocks of the README and of every page under
``docs/`` (continuations joined, ``#`` comments dropped) are checked without running anything:
``python -m ovo.<command> ...`` composes its Hydra config with those overrides (a synopsis is made
concrete: ``[optional]`` parts included, the first of ``a|b``; a sweep takes its first values),
another ``python -m ovo.<module>`` must exist, ``python <script>.py`` names a file of the
repository and ``make <target>`` a target of the Makefile. A study's long GPU commands are
covered this way too: they compose, and nothing is trained.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ovo.paths import conf_dir

from helpers import FAST, REPO, flat_keys, run_module

GOLDEN = json.loads((Path(__file__).parent / "golden" / "surface_465a06b.json").read_text())

# The README's command lines at 465a06b (synopses made concrete: [optional] parts included,
# placeholders filled in by `_fill`).
README_LINES = [
    "python -m ovo.train experiment=quickstart",
    "python -m ovo.search ckpt_path=outputs/quickstart/runs/<time>/checkpoints/last.ckpt "
    "constraints.params_max=0.8M name=qs",
    'python -m ovo.evaluate ckpt_path=... arch="[min,max,random:10,outputs/search/qs/best_arch.yaml]"',
    "python -m ovo.export ckpt_path=... arch=outputs/search/qs/best_arch.yaml onnx=true",
    "python -m ovo.train experiment=ovo_ti data.root=/data/imagenet",
    "python -m ovo.train experiment=ovo_ti trainer=ddp_multinode trainer.num_nodes=2 "
    "trainer.devices=8",
    "python -m ovo.train experiment=ovo_ti_cifar100 data.root=/data/cifar",
    "python -m ovo.train experiment=ovo_ti trainer=gpu",
    "python -m ovo.train -m experiment=ovo_ti_cifar100 distill.alpha=0.5,1.0 distill=ovo,max",
    "python -m ovo.train -m hydra/launcher=slurm experiment=ovo_ti trainer=ddp_multinode "
    "distill.tau=1,2",
    "python -m ovo.train experiment=ovo_ti hydra.run.dir=outputs/ovo_ti/runs/<time> ckpt_path=last",
    "python -m ovo.search ckpt_path=CKPT constraints.params_max=6M constraints.flops_max=1.3G "
    "strategy=random name=NAME eval.devices=8 eval.strategy=ddp",
    "python -m ovo.evaluate ckpt_path=CKPT arch=[min,max,random:20,best_arch.yaml] split=search",
    "python -m ovo.export ckpt_path=CKPT arch=best_arch.yaml onnx=true out_dir=DIR",
    "python -m ovo.train experiment=quickstart distill=none "
    "fixed_arch=outputs/search/qs/best_arch.yaml",
]
CONFIG_OF = {"ovo.train": "train", "ovo.search": "search", "ovo.evaluate": "evaluate"}
CONFIG_OF["ovo.export"] = "export"
# commands added after 465a06b (their README lines are checked by the current-README test)
CONFIG_OF |= {"ovo.rank": "rank", "ovo.latency": "latency"}

MICRO = [
    "space.name=micro",
    "space.embed_dim=[16,24]",
    "space.depth=[1,2]",
    "space.num_heads=[1,2]",
    "space.mlp_ratio=[1.0,2.0]",
    "space.head_dim=8",
]


def _fill(arg: str) -> str:
    return arg.replace("<time>", "2026-01-01_00-00-00").replace("=...", "=CKPT")


def _overrides(line: str) -> tuple[str, list[str]]:
    """(config name, Hydra overrides) of a README command line; sweeps take their first value."""
    words = shlex.split(line)
    assert words[:2] == ["python", "-m"], line
    module, args = words[2], [_fill(a) for a in words[3:] if a != "-m"]
    args = [a.split(",")[0] if "," in a and "[" not in a else a for a in args]
    return CONFIG_OF[module], args


def _compose(config: str, overrides: list[str]):
    from ovo.commands.cli import open_overrides  # the command's own preprocessing

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose(config, overrides=open_overrides(config, overrides))


def _bash_lines(text: str) -> list[str]:
    """The lines of a Markdown text's fenced bash blocks: continuations joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(line.split("  #")[0].split())
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _readme_lines_now() -> list[str]:
    return [
        line
        for line in _bash_lines((REPO / "README.md").read_text())
        if line.startswith("python -m ovo.") and "[" not in line.split("=", 1)[0]
    ]


def _concrete(words: list[str]) -> list[str]:
    """A synopsis's words made concrete: ``[optional]`` parts included (a word that starts with
    ``[`` opens one; a value list starts after ``=``), the first of ``key=a|b``."""
    out, depth = [], 0
    for word in words:
        if word.startswith("["):
            word, depth = word[1:], depth + 1
        if depth and word.count("]") > word.count("["):
            word, depth = word[:-1], depth - 1
        key, eq, value = word.partition("=")
        if eq and "|" in value:
            word = f"{key}={value.split('|')[0]}"
        out.append(word)
    return out


def _slurm_missing() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None
    except ModuleNotFoundError:
        return True


def _check_documented(line: str) -> None:
    """A documented command line holds (see the module docstring); other lines are not checked."""
    words = shlex.split(line)
    if words[:2] == ["python", "-m"] and words[2].startswith("ovo."):
        if words[2] not in CONFIG_OF:  # a module without a Hydra config (ovo.demo)
            assert importlib.util.find_spec(words[2]), f"no module {words[2]}: {line}"
        elif not ("hydra/launcher=slurm" in line and _slurm_missing()):
            _compose(*_overrides(" ".join(shlex.quote(w) for w in _concrete(words))))
    elif words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
        assert (REPO / words[1]).is_file(), f"no script {words[1]}: {line}"
    elif words[0] == "make" and len(words) > 1 and "=" not in words[1]:
        makefile = (REPO / "Makefile").read_text()
        assert re.search(rf"^{re.escape(words[1])}:", makefile, re.M), f"no make target: {line}"


DOC_PAGES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").rglob("*.md"))


@pytest.mark.parametrize("line", README_LINES)
def test_pinned_readme_command_lines_still_compose(line):
    if "hydra/launcher=slurm" in line:
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="slurm extra")
    config, overrides = _overrides(line)
    cfg = _compose(config, overrides)
    assert cfg.task_name


def test_current_readme_command_lines_compose():
    lines = _readme_lines_now()
    assert lines, "the README lost its command lines"
    for line in lines:
        if "hydra/launcher=slurm" in line or "[" in line.replace("arch=[", "").replace('"[', ""):
            continue  # synopses and the optional SLURM extra are covered above
        _compose(*_overrides(line))


def test_every_documented_readme_command_holds():
    lines = _bash_lines((REPO / "README.md").read_text())
    assert sum(line.startswith("python -m ovo.") for line in lines) >= 10, lines
    for line in lines:
        _check_documented(line)


@pytest.mark.parametrize("page", DOC_PAGES)
def test_documented_commands_of_the_docs_hold(page):
    for line in _bash_lines((REPO / page).read_text()):
        _check_documented(line)


def test_documented_synopses_are_made_concrete():
    words = shlex.split(
        "python -m ovo.search ckpt_path=CKPT [constraints.params_max=6M] "
        "[strategy=evolution|random] [eval.devices=8 eval.strategy=ddp] "
        '"archs=[band:12@0.5M,stratified:4]" [format=[safetensors,pt2,onnx]] split=val|search'
    )
    assert _concrete(words)[3:] == [
        "ckpt_path=CKPT",
        "constraints.params_max=6M",
        "strategy=evolution",
        "eval.devices=8",
        "eval.strategy=ddp",
        "archs=[band:12@0.5M,stratified:4]",
        "format=[safetensors,pt2,onnx]",
        "split=val",
    ]


def test_the_notebooks_page_lists_every_notebook():
    page = (REPO / "docs" / "notebooks.md").read_text()
    missing = [
        p.name for p in (REPO / "notebooks").glob("*.ipynb") if f"notebooks/{p.name}" not in page
    ]
    assert not missing, f"docs/notebooks.md does not list {missing}"


@pytest.mark.parametrize("config", ["train", "search", "evaluate", "export"])
def test_config_keys_and_defaults_are_kept(config):
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose(config, overrides=[] if config == "train" else ["ckpt_path=x"])
    now = flat_keys(OmegaConf.to_container(cfg, resolve=False))
    pinned = GOLDEN[config]
    missing = sorted(set(pinned) - set(now))
    assert not missing, f"config keys removed: {missing}"
    changed = {k: (pinned[k], now[k]) for k in pinned if now[k] != pinned[k]}
    assert not changed, f"defaults changed: {changed}"


def test_config_groups_are_kept():
    for group, options in GOLDEN["groups"].items():
        have = {p.stem for p in (conf_dir() / group).glob("*.yaml")}
        assert set(options) <= have, (group, sorted(set(options) - have))


def _run_module(module: str, args: list[str]) -> None:
    code = run_module(module, args)
    assert code == 0, f"{module} exited with {code}"


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("surface")
    args = [a for a in FAST if not a.startswith("space=")] + ["space=nano", *MICRO]
    _run_module("ovo.train", [*args, "trainer.max_epochs=1", f"hydra.run.dir={out}/train"])
    ckpt = out / "train" / "checkpoints" / "last.ckpt"
    search = [
        f"ckpt_path={ckpt}",
        f"paths.log_dir={out}",
        "name=golden",
        "population=6",
        "generations=2",
        "parents=2",
        "mutations=2",
        "crossovers=2",
        "wandb.enabled=false",
        "constraints.params_max=20k",
    ]
    _run_module("ovo.search", search)
    return ckpt, out / "search" / "golden"


def test_what_a_checkpoint_holds(micro_run):
    ckpt = torch.load(micro_run[0], weights_only=True)
    schemas = GOLDEN["schemas"]
    assert set(schemas["checkpoint"]) <= set(ckpt)
    assert set(schemas["checkpoint.hyper_parameters"]) <= set(ckpt["hyper_parameters"])
    assert sorted(ckpt["state_dict"]) == schemas["checkpoint.state_dict(micro)"]


def test_results_and_search_state_schemas(micro_run):
    results = json.loads((micro_run[1] / "results.json").read_text())
    state = json.loads((micro_run[1] / "search_state.json").read_text())
    schemas = GOLDEN["schemas"]
    pairs = {
        "results": results,
        "results.best": results["best"],
        "results.final[]": results["final"][0],
        "results.evaluated[]": results["evaluated"][0],
        "results.history[]": results["history"][0],
        "results.settings": results["settings"],
        "state": state,
        "state.settings": state["settings"],
        "state.evaluated[]": state["evaluated"][0],
        "state.history[]": state["history"][0],
    }
    for name, data in pairs.items():
        missing = sorted(set(schemas[name]) - set(data))
        assert not missing, f"{name} lost keys {missing}"
    assert results["format"] == "ovo.search.result" and state["format"] == "ovo.search.state"
    assert isinstance(results["version"], int) and isinstance(state["version"], int)
