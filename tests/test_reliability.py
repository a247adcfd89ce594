"""Bad inputs get one clear error through the real entry points; faults lose nothing."""

import json
import random
import sys

import lightning as L
import pytest
import torch
from PIL import Image

from ovo.commands import evaluate as evaluate_cmd
from ovo.commands import train as train_cmd
from ovo.commands.rundir import check_writable
from ovo.commands.train import train
from ovo.errors import ConfigError

from helpers import FAST, compose_cfg, run_cli, run_main


def _folder(root, classes=("a", "b"), per_class=6, size=8):
    for c in classes:
        (root / "train" / c).mkdir(parents=True, exist_ok=True)
        (root / "val" / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            for split in ("train", "val"):
                Image.new("RGB", (size, size), (i * 20, 0, 0)).save(root / split / c / f"{i}.png")
    return root


FOLDER = [
    "data=imagefolder",
    "data.num_classes=null",
    "data.val_split=val",
    "data.img_size=32",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.search_per_class=1",
    "data.persistent_workers=false",
    "data.pin_memory=false",
    "space=nano",
    "model.patch_size=8",
    "trainer=cpu",
    "logger=csv",
    "trainer.max_epochs=1",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "panel.num_random=1",
]


def _train_args(tmp_path, *extra):
    base = FOLDER
    if any(e.startswith("data=") for e in extra):  # another data group: keep only non-data keys
        base = [a for a in FOLDER if not a.startswith("data")]
    return [*base, f"hydra.run.dir={tmp_path}/run", *extra]


def _bad_layouts(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_train = tmp_path / "no_train"
    (no_train / "val" / "a").mkdir(parents=True)
    empty_class = _folder(tmp_path / "empty_class")
    (empty_class / "train" / "c").mkdir()
    (empty_class / "val" / "c").mkdir()
    few = _folder(tmp_path / "few", per_class=3)
    a_file = tmp_path / "data.tar"
    a_file.write_bytes(b"an archive, not unpacked")
    return {
        "missing root": ([f"data.root={tmp_path}/nope"], "does not exist"),
        "root is a file": ([f"data.root={a_file}"], f"{a_file} is a file, not a folder"),
        "cifar root is a file": (
            ["data=cifar10", f"data.root={a_file}"],
            f"{a_file} is a file, not a folder; expected a folder that contains cifar-10",
        ),
        "empty root": ([f"data.root={empty}"], "train"),
        "no train split": ([f"data.root={no_train}"], "train"),
        "class without images": ([f"data.root={empty_class}"], "train/c has no images"),
        "too few for the search split": (
            [f"data.root={few}", "data.search_per_class=5"],
            "search_per_class",
        ),
        "cifar100 offline, no copy": (["data=cifar100", f"data.root={empty}"], "cifar-100-python"),
        "empty choice list": (
            [f"data.root={few}", "space.embed_dim=[]"],
            "embed_dim has no choices",
        ),
        "non-positive choice": ([f"data.root={few}", "space.depth=[0,2]"], "positive"),
        "head_dim that cannot be built": (
            [f"data.root={few}", "space.head_dim=0"],
            "head_dim must be positive",
        ),
        "bad distill mode": ([f"data.root={few}", "distill.teacher=biggest"], "distill.teacher"),
    }


CASES = [
    "missing root",
    "root is a file",
    "cifar root is a file",
    "empty root",
    "no train split",
    "class without images",
    "too few for the search split",
    "cifar100 offline, no copy",
    "empty choice list",
    "non-positive choice",
    "head_dim that cannot be built",
    "bad distill mode",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_training_input_is_one_clear_line(case, tmp_path, capsys):
    overrides, needle = _bad_layouts(tmp_path)[case]
    code, out, err = run_main(train_cmd.main, _train_args(tmp_path, *overrides), capsys)
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("ovo: error:")]
    assert len(lines) == 1 and needle in lines[0], err[-2000:]
    assert "Traceback" not in err


def test_unknown_hydra_key_is_refused_by_hydra(tmp_path):
    proc = run_cli("ovo.train", [*FAST, "optimiser.lr=1", f"hydra.run.dir={tmp_path}/r"], tmp_path)
    assert proc.returncode == 1
    assert "optimiser" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_image_fails_naming_the_file(tmp_path, capsys):
    root = _folder(tmp_path / "data", per_class=6)
    bad = root / "train" / "a" / "3.png"
    bad.write_bytes(bad.read_bytes()[:20])  # truncated
    code, _, err = run_main(train_cmd.main, _train_args(tmp_path, f"data.root={root}"), capsys)
    assert code == 2 and "3.png" in err and "skip_corrupt" in err, err[-2000:]
    # with skip_corrupt the run completes
    code, _, err = run_main(
        train_cmd.main,
        _train_args(
            tmp_path,
            f"data.root={root}",
            "data.skip_corrupt=true",
            f"hydra.run.dir={tmp_path}/run2",
        ),
        capsys,
    )
    assert code == 0, err[-2000:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    train(compose_cfg("train", FAST + ["trainer.max_epochs=1"], out))
    return out / "checkpoints" / "last.ckpt"


def test_arch_outside_the_space_names_the_field(trained, tmp_path, capsys):
    arch = tmp_path / "arch.yaml"
    arch.write_text("embed_dim: 100\ndepth: 4\nnum_heads: 2\nmlp_ratio: 2.0\n")
    code, _, err = run_main(
        evaluate_cmd.main,
        [f"ckpt_path={trained}", f"arch={arch}", f"hydra.run.dir={tmp_path}/ev"],
        capsys,
    )
    assert code == 2 and "embed_dim=100 is not in space 'nano'" in err


def test_checkpoint_of_another_model_size_is_refused(trained, tmp_path, capsys):
    ckpt = torch.load(trained, weights_only=True)
    ckpt["hyper_parameters"]["model"]["num_classes"] = 7
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    code, _, err = run_main(
        evaluate_cmd.main, [f"ckpt_path={other}", f"hydra.run.dir={tmp_path}/ev"], capsys
    )
    assert code == 2 and "does not match the supernet" in err


def test_truncated_checkpoint_is_refused(trained, tmp_path, capsys):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(trained.read_bytes()[:5000])
    code, _, err = run_main(
        evaluate_cmd.main, [f"ckpt_path={cut}", f"hydra.run.dir={tmp_path}/e"], capsys
    )
    assert code == 2 and "not a readable checkpoint" in err


class PoisonBatch(L.Callback):
    """Turns the inputs of one step into NaN (a corrupt batch, a diverging run)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            batch[0].fill_(float("nan"))


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    from ovo.training.module import NonFiniteLossError

    steps_per_epoch = (128 - 40) // 16
    cfg = compose_cfg("train", FAST + ["trainer.max_epochs=3"], tmp_path)
    with pytest.raises(NonFiniteLossError, match=f"at step {steps_per_epoch + 2} "):
        train(cfg, extra_callbacks=[PoisonBatch(steps_per_epoch + 2)])
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == steps_per_epoch  # the end of epoch 0, before the NaN
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


def test_output_dir_checks(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        check_writable(blocker / "run")
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10 * 2**20))
    with pytest.raises(ConfigError, match="GiB free"):
        check_writable(tmp_path, need_bytes=2**30)


def _final_weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow  # subprocesses: run by `make test-slow` (CI runs it)
def test_kill_9_during_training_then_resume_equals_uninterrupted(tmp_path):
    common = FAST + ["trainer.max_epochs=3", "mixup.mixup_alpha=0.8", "mixup.cutmix_alpha=1.0"]
    steps_per_epoch = (128 - 40) // 16
    kill_at = random.Random(0).randrange(steps_per_epoch + 1, 3 * steps_per_epoch)
    run_dir = tmp_path / "killed"
    proc = run_cli(
        "ovo.train",
        [
            *common,
            f"hydra.run.dir={run_dir}",
            "+callbacks.fault._target_=ovo.training.faults.KillAtStep",
            f"+callbacks.fault.step={kill_at}",
        ],
        tmp_path,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["global_step"] < kill_at
    train(compose_cfg("train", common + ["ckpt_path=last"], run_dir))
    train(compose_cfg("train", common, tmp_path / "straight"))
    a = _final_weights(run_dir / "checkpoints/last.ckpt")
    b = _final_weights(tmp_path / "straight/checkpoints/last.ckpt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


SEARCH = [
    "population=6",
    "generations=4",
    "parents=2",
    "mutations=2",
    "crossovers=2",
    "wandb.enabled=false",
]


@pytest.mark.slow  # subprocesses: run by `make test-slow` (CI runs it)
def test_kill_9_during_search_then_same_command_equals_uninterrupted(trained, tmp_path):
    args = [f"ckpt_path={trained}", f"paths.log_dir={tmp_path}", *SEARCH]
    kill = [
        "+callbacks.fault._target_=ovo.training.faults.KillAfterGeneration",
        "+callbacks.fault.generation=1",
    ]
    proc = run_cli("ovo.search", [*args, "name=k", *kill], tmp_path)
    assert proc.returncode == -9, proc.stderr[-2000:]
    state = json.loads((tmp_path / "search/k/search_state.json").read_text())
    assert state["generation"] == 1 and not state["complete"]
    resumed = run_cli("ovo.search", [*args, "name=k"], tmp_path)
    straight = run_cli("ovo.search", [*args, "name=s"], tmp_path)
    assert resumed.returncode == straight.returncode == 0, resumed.stderr[-2000:]
    r = json.loads((tmp_path / "search/k/results.json").read_text())
    s = json.loads((tmp_path / "search/s/results.json").read_text())
    assert r["evaluated"] == s["evaluated"] and r["best"] == s["best"]
    assert r["history"] == s["history"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
