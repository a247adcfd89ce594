"""A table of mistakes a user can make, per command: each ends in exactly one ``ovo: error:`` line
and exit status 2, with no traceback, and writes or damages nothing (checkpoints, search state,
results, exported models). Commands run in-process exactly as ``python -m ovo.<command>``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from helpers import FAST, run_module

FIX = Path(__file__).parent / "fixtures" / "pre_refactor_465a06b"
GPU_PRESET = "trainer=gpu"
# cases that are mistakes only on a machine without a GPU: skipped where one is present
NEEDS_NO_GPU = {"trainer preset this machine cannot run", "eval on a missing GPU"}
ON_GPU = pytest.mark.skipif(
    torch.cuda.is_available(), reason="a GPU is present: asking for it is not a mistake here"
)


def _cases(items: list) -> list:
    """``items`` (case names, or (command, case) pairs) with the GPU-dependent cases marked."""
    out = []
    for item in items:
        values = item if isinstance(item, tuple) else (item,)
        out.append(pytest.param(*values, marks=ON_GPU) if values[-1] in NEEDS_NO_GPU else item)
    return out


TRAIN_CASES = {
    "patch size that does not divide the image": (["model.patch_size=5"], "model.patch_size=5"),
    "negative learning rate": (["optimizer.lr=-1"], "optimizer: Invalid learning rate"),
    "unknown optimizer": (["optimizer.opt=adamz"], "optimizer:"),
    "unknown schedule": (["scheduler.sched=cosinus"], "scheduler:"),
    "malformed arch YAML": (["distill=none", "fixed_arch={bad_yaml}"], "is not valid YAML"),
    "arch file missing": (["distill=none", "fixed_arch=nope.yaml"], "fixed_arch"),
    "trainer preset this machine cannot run": ([GPU_PRESET], "trainer:"),
    "distill alpha out of range": (["distill.alpha=2"], "distill.alpha=2.0 must be in [0, 1]"),
    "distill loss unknown": (["distill.loss=mse"], "distill.loss='mse'"),
    "pooling unknown": (["model.global_pool=max"], "model.global_pool='max'"),
    "wrong type": (["model.drop_path_rate=lots"], "model.drop_path_rate='lots'"),
    "batch size zero": (["data.batch_size=0"], "data.batch_size must be >= 1"),
    "aug key unknown": (["+data.aug.flip=0.5"], "unknown setting data.aug.flip"),
    "teacher depth unknown": (["distill.teacher_depth=deepest"], "distill.teacher_depth="),
    "student depth unknown": (["distill.student_depth=square"], "distill.student_depth="),
    "full-depth teacher of a fixed teacher": (
        ["distill=sandwich", "distill.teacher_depth=max"],
        "applies to teacher=sampled or larger",
    ),
    "layer LR scale unknown": (["optimizer.layer_lr_scale=fancy"], "optimizer.layer_lr_scale="),
    "layer LR scale of a fixed arch": (
        ["distill=none", "fixed_arch=max", "optimizer.layer_lr_scale=inverse_usage"],
        "fixed_arch trains every layer",
    ),
    "per-depth norm not a bool": (["model.per_depth_norm=perhaps"], "model.per_depth_norm="),
    "resume without a checkpoint": (["ckpt_path=last"], "ckpt_path=last"),
    "resume from a directory": (["ckpt_path={ckpt_dir}"], "is a directory; pass the .ckpt file"),
    "resume from a corrupt checkpoint": (["ckpt_path={broken}"], "trained: last.ckpt)"),
}
CKPT_CASES = {
    "search": {
        "population zero": (["population=0"], "population=0 must be at least 1"),
        "unknown strategy": (["strategy=annealing"], "strategy='annealing'"),
        "budget not a count": (["constraints.params_max=lots"], "is not a count"),
        "impossible budget": (["constraints.params_max=10"], "widen the budget"),
        "top_k zero": (["top_k=0"], "top_k=0"),
        "eval on a missing GPU": (["eval.accelerator=gpu"], "eval.accelerator=gpu"),
        "data setting the data module does not take": (["data.foo=1"], "data.foo"),
        "bad data value": (["data.batch_size=0"], "data.batch_size must be >= 1"),
        "checkpoint missing": (["ckpt_path=/nonexistent.ckpt"], "does not exist"),
        "checkpoint of another space": (["+space=tiny"], "trained on space 'micro'"),
        "checkpoint is a directory": (["ckpt_path={ckpt_dir}"], "e.g. {ckpt}"),
        "corrupt checkpoint": (["ckpt_path={broken}"], "other checkpoints in {ckpt_dir}: last"),
        "unknown final split": (["final_split=train"], "final_split=train: use val, test or"),
    },
    "evaluate": {
        "unknown split": (["split=train"], "split=train: use val, test or search"),
        "random without a count": (["arch=random:x"], "random:N"),
        "malformed arch YAML": (["arch={bad_yaml}"], "is not valid YAML"),
        "arch outside the space": (["arch={big_arch}"], "not in space 'micro'"),
        "max_batches zero": (["eval.max_batches=0"], "eval.max_batches=0"),
        "data setting the data module does not take": (["data.rooot=/x"], "data.rooot"),
    },
    "export": {
        "two archs for one export": (["arch=[min,max]"], "names 2 archs"),
        "malformed arch YAML": (["arch={bad_yaml}"], "is not valid YAML"),
        "verify batch zero": (["verify_batch=0"], "verify_batch=0"),
        "not a checkpoint": (["ckpt_path={not_a_ckpt}"], "is not a readable checkpoint"),
        "checkpoint is a directory": (["ckpt_path={ckpt_dir}"], "is a directory; pass the"),
    },
}


@pytest.fixture()
def files(tmp_path):
    bad = tmp_path / "bad_arch.yaml"
    bad.write_text("embed_dim: [16\nnum_heads: {")
    big = tmp_path / "big_arch.yaml"
    big.write_text("embed_dim: 64\ndepth: 1\nnum_heads: [1]\nmlp_ratio: [1.0]\n")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    ckpt = tmp_path / "trained" / "last.ckpt"
    ckpt.parent.mkdir()
    shutil.copyfile(FIX / "last.ckpt", ckpt)
    broken = ckpt.parent / "broken.ckpt"  # beside a good one, which the error names
    broken.write_bytes(ckpt.read_bytes()[:5000])
    return {
        "bad_yaml": bad,
        "big_arch": big,
        "not_a_ckpt": junk,
        "ckpt": ckpt,
        "ckpt_dir": ckpt.parent,
        "broken": broken,
    }


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but Hydra's own records of the run (``.hydra/``, ``*.log``)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"
    }


def _one_error_line(code: int, err: str, needle: str) -> None:
    assert code == 2, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("ovo: error:")]
    assert len(lines) == 1, err[-3000:]
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("case", _cases(sorted(TRAIN_CASES)))
def test_train_mistakes(case, files, tmp_path, capsys):
    overrides, needle = TRAIN_CASES[case]
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "keep.ckpt").write_bytes(b"an earlier run's checkpoint")
    before = _snapshot(run_dir)
    args = [a.format(**files) for a in overrides]
    code = run_module("ovo.train", [*FAST, *args, f"hydra.run.dir={run_dir}"])
    _one_error_line(code, capsys.readouterr().err, needle)
    assert _snapshot(run_dir) == before  # nothing written, nothing changed


@pytest.mark.parametrize(
    "command,case", _cases([(c, k) for c, cases in CKPT_CASES.items() for k in sorted(cases)])
)
def test_checkpoint_command_mistakes(command, case, files, tmp_path, capsys):
    overrides, needle = CKPT_CASES[command][case]
    out = tmp_path / "out"
    (out / "search" / "s").mkdir(parents=True)
    (out / "search" / "s" / "search_state.json").write_text('{"an earlier": "state"}')
    (out / "model").mkdir()
    (out / "model" / "model.safetensors").write_bytes(b"an earlier export")
    before = _snapshot(tmp_path)
    args = (
        [] if any(a.startswith("ckpt_path=") for a in overrides) else [f"ckpt_path={files['ckpt']}"]
    )
    if command == "search":
        args += [f"paths.log_dir={out}", "name=s", "wandb.enabled=false", "population=4"]
        args += ["parents=2", "mutations=1", "crossovers=1", "generations=1"]
    elif command == "export":
        args += ["arch=max", f"out_dir={out}/model", f"hydra.run.dir={out}/export"]
    else:
        args += [f"hydra.run.dir={out}/evaluate"]
    args += [a.format(**files) for a in overrides]
    code = run_module(f"ovo.{command}", args)
    _one_error_line(code, capsys.readouterr().err, needle.format(**files))
    assert _snapshot(tmp_path) == before


# A mistyped option of a config group: one line naming the group and its choices, not Hydra's
# listing of its search path (exit 1); before Hydra makes the run directory.
GROUP_TYPOS = [
    ("ovo.train", "experiment=ovo_tii", "config group 'experiment'"),
    ("ovo.train", "space=tinyy", "config group 'space'; choose one of: base, nano, small, tiny"),
    ("ovo.train", "data=cifar1000", "config group 'data'"),
    ("ovo.train", "trainer=gpuu", "config group 'trainer'"),
    ("ovo.train", "distill=ovo,maxx", "distill=maxx is not an option"),  # a sweep's choice
]


@pytest.mark.parametrize("module,override,needle", GROUP_TYPOS)
def test_a_mistyped_group_option_is_one_line(
    module, override, needle, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OVO_LOG_DIR", str(tmp_path / "logs"))
    code = run_module(module, [override, "ckpt_path=none.ckpt"][: 1 + (module != "ovo.train")])
    _one_error_line(code, capsys.readouterr().err, needle)
    assert list(tmp_path.iterdir()) == []  # no run directory, no log


def test_which_overrides_are_checked_as_group_options():
    from ovo.commands.cli import unknown_option

    assert unknown_option("train", ["experiment=ovo_tii"]) is not None
    assert (
        unknown_option("train", ["experiment=quickstart", "space=nano", "trainer.devices=1"])
        is None
    )
    assert unknown_option("train", ["distill=ovo,max", "~logger", "+extra=1"]) is None
    # other config directories may hold the option: left to Hydra
    assert unknown_option("train", ["--config-dir", "x", "experiment=mine"]) is None
    # keys of a command that has no such group (search's `space` is a key) are not groups
    assert unknown_option("search", ["space=tinyy"]) is None


def test_debug_mode_shows_hydras_own_message_for_a_mistyped_option(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OVO_DEBUG", "1")  # as HYDRA_FULL_ERROR=1 (run_module clears that one)
    monkeypatch.setenv("OVO_LOG_DIR", str(tmp_path / "logs"))
    code = run_module("ovo.train", ["experiment=ovo_tii"])
    err = capsys.readouterr().err
    assert code == 1 and "ovo: error" not in err and "ovo_tii" in err
