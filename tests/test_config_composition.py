"""How the commands' configs are composed (``conf/``): what each command keeps as its own.

Every command has its own run directory, and for search, rank and latency that directory is the
resume key (``search/${name}``: the same command again resumes from ``search_state.json``), so
it is pinned here as the resolved path the command writes to.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from ovo.paths import conf_dir

NOW = "<now>"


def compose_with_hydra(config: str, overrides: list[str]):
    """``conf/<config>.yaml`` composed as the command composes it, with its ``hydra`` node."""
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose(config, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    OmegaConf.register_new_resolver("now", lambda fmt: NOW, replace=True)
    return cfg


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
    cfg = compose_with_hydra(config, ["paths.log_dir=/L", *overrides])
    assert cfg.hydra.run.dir == run_dir
    assert cfg.hydra.job.chdir is False  # outputs are found from where the command was typed


def test_train_sweeps_get_a_directory_per_job():
    cfg = compose_with_hydra("train", ["paths.log_dir=/L", "experiment=quickstart"])
    assert cfg.hydra.sweep.dir == f"/L/quickstart/multiruns/{NOW}"
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}"


def test_onnx_true_is_shorthand_for_adding_onnx_to_format():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from ovo.commands.export import check_settings

    def formats(*overrides):
        cfg = compose_with_hydra("export", ["ckpt_path=x", *overrides])
        return check_settings(cfg)[0]

    assert formats() == ["safetensors"]
    assert formats("onnx=true") == formats("format=[safetensors,onnx]") == ["safetensors", "onnx"]
    assert formats("onnx=true", "format=[pt2]") == ["safetensors", "pt2", "onnx"]
