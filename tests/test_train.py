import json
import random

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from ovo.commands.train import build_module, train
from ovo.errors import ConfigError
from ovo.space import Arch
from ovo.training.distill import StepArchs, label_loss
from ovo.training.module import OVOModule

from helpers import FAST, compose_cfg, run_cli

STEPS_PER_EPOCH = (128 - 4 * 10) // 16  # FAST: 128 fake images, 4 per class held out
EXPERIMENTS = ["quickstart", "ovo_ti", "ovo_s", "ovo_b", "ovo_ti_cifar100", "autoformer_ti"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_of_every_experiment(experiment, tmp_path):
    cfg = compose_cfg(
        "train",
        [
            f"experiment={experiment}",
            "data=fake",
            "trainer=cpu",
            "data.batch_size=4",
            "data.num_workers=0",
            "+trainer.fast_dev_run=1",
            "logger=csv",
            "callbacks.progress_bar=null",
            "callbacks.model_summary=null",
        ],
        tmp_path,
    )
    assert cfg.trainer.accelerator == "cpu" and cfg.data._target_.endswith("FakeDataModule")
    summary = train(cfg)
    assert summary["metrics"]["train/loss"] > 0
    assert set(summary["panel"]) >= {"min", "max"}
    expected_space = {"quickstart": "nano", "ovo_s": "small", "ovo_b": "base"}.get(
        experiment, "tiny"
    )
    assert cfg.space.name == expected_space
    if experiment == "autoformer_ti":
        assert cfg.distill.teacher == "none"


def _module(tmp_path, *overrides):
    cfg = compose_cfg("train", FAST + list(overrides), tmp_path)
    dm = instantiate(cfg.data)
    module = build_module(cfg, dm).eval()  # eval: no drop-path, so forwards are repeatable
    return module, dm


def test_step_losses_teacher_plus_student(tmp_path):
    module, dm = _module(tmp_path, "distill.alpha=0.5", "distill.tau=2.0")
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    space = module.space
    archs = StepArchs(space.max_arch, (space.min_arch,))
    total, logs = module.step_losses(x, y, archs)
    t_loss = label_loss(module.net(x, space.max_arch), y, module.hparams.label_smoothing)
    torch.testing.assert_close(logs["teacher_loss"], t_loss)
    expected_student = 0.5 * logs["student_kd"] + 0.5 * logs["student_ce"]
    torch.testing.assert_close(logs["student_loss"], expected_student)
    torch.testing.assert_close(total.detach(), t_loss.detach() + expected_student)
    total.backward()  # one backward reaches the weights of both subnets
    assert module.net.blocks[-1].mlp.fc1.weight.grad.abs().sum() > 0


def test_kd_off_is_the_label_only_baseline(tmp_path):
    module, dm = _module(tmp_path)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    student = module.space.sample(random.Random(3))
    _, logs_off = module.step_losses(
        x, y, StepArchs(module.space.max_arch, (student,)), kd_on=False
    )
    _, logs_none = module.step_losses(x, y, StepArchs(None, (student,)))
    ce = label_loss(module.net(x, student), y, module.hparams.label_smoothing)
    torch.testing.assert_close(logs_off["student_loss"], ce.detach())
    torch.testing.assert_close(logs_none["student_loss"], ce.detach())
    assert "student_kd" not in logs_off and "teacher_loss" not in logs_none


def test_distill_none_trains_one_subnet_per_step(tmp_path):
    cfg = compose_cfg(
        "train",
        FAST + ["distill=none", f"arch_trace_path={tmp_path}/trace", "trainer.max_epochs=1"],
        tmp_path,
    )
    train(cfg)
    records = [
        json.loads(line) for line in (tmp_path / "trace.rank0.jsonl").read_text().splitlines()
    ]
    assert len(records) == STEPS_PER_EPOCH
    assert all(r["teacher"] is None and len(r["students"]) == 1 for r in records)


def test_fixed_arch_trains_one_standalone_subnet(tmp_path):
    arch_file = tmp_path / "best_arch.yaml"
    arch_file.write_text(
        "embed_dim: 96\ndepth: 4\nnum_heads: [2, 3, 4, 2]\nmlp_ratio: [2.0, 3.0, 4.0, 2.0]\n"
    )
    cfg = compose_cfg(
        "train",
        FAST
        + [
            "distill=none",
            f"fixed_arch={arch_file}",
            f"arch_trace_path={tmp_path}/trace",
            "trainer.max_epochs=1",
        ],
        tmp_path,
    )
    summary = train(cfg)
    assert set(summary["panel"]) == {"fixed"}
    records = [
        json.loads(line) for line in (tmp_path / "trace.rank0.jsonl").read_text().splitlines()
    ]
    assert len(records) == STEPS_PER_EPOCH
    expected = Arch.from_yaml(arch_file).to_dict()
    assert all(r["teacher"] is None and r["students"] == [expected] for r in records)
    ckpt = torch.load(summary["last_checkpoint"], weights_only=True)
    assert ckpt["hyper_parameters"]["fixed_arch"] == expected


def test_fixed_arch_needs_distill_none_and_an_existing_file(tmp_path):
    with pytest.raises(ConfigError, match="set distill=none"):
        _module(tmp_path, "fixed_arch={embed_dim: 64, depth: 4, num_heads: 2, mlp_ratio: 2.0}")
    with pytest.raises(ConfigError, match="not min, max, random:N or an existing YAML/JSON file"):
        _module(tmp_path, "distill=none", f"fixed_arch={tmp_path}/missing.yaml")


class StopAfterEpoch(L.Callback):
    """Simulates an interruption at an epoch boundary."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epoch:
            trainer.should_stop = True


def _weights(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt["state_dict"], ckpt["global_step"]


def test_resume_is_exact(tmp_path):
    common = FAST + [
        "trainer.max_epochs=3",
        "mixup.mixup_alpha=0.8",
        "mixup.cutmix_alpha=1.0",
        "model.drop_path_rate=0.1",
    ]
    straight = compose_cfg("train", common, tmp_path / "a")
    train(straight)
    interrupted = compose_cfg("train", common, tmp_path / "b")
    train(interrupted, extra_callbacks=[StopAfterEpoch(1)])
    first_leg, step = _weights(tmp_path / "b/checkpoints/last.ckpt")
    assert step == STEPS_PER_EPOCH
    resumed = compose_cfg("train", common + ["ckpt_path=last"], tmp_path / "b")
    train(resumed)
    a, step_a = _weights(tmp_path / "a/checkpoints/last.ckpt")
    b, step_b = _weights(tmp_path / "b/checkpoints/last.ckpt")
    assert step_a == step_b == 3 * STEPS_PER_EPOCH
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert any(not torch.equal(first_leg[k], a[k]) for k in a)  # the resumed leg did train


def test_ddp_two_cpu_processes_sample_identical_archs(tmp_path):
    args = FAST + [
        "trainer.devices=2",
        "trainer.strategy=ovo_ddp",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path}/run",
        f"arch_trace_path={tmp_path}/trace",
    ]
    proc = run_cli("ovo.train", args, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [(tmp_path / f"trace.rank{r}.jsonl").read_text().splitlines() for r in (0, 1)]
    r0 = [json.loads(line) for line in ranks[0]]
    r1 = [json.loads(line) for line in ranks[1]]
    assert len(r0) == len(r1) == (128 - 40) // 2 // 16
    assert [(r["step"], r["teacher"], r["students"]) for r in r0] == [
        (r["step"], r["teacher"], r["students"]) for r in r1
    ]
    assert {r["rank"] for r in r1} == {1}


def test_multirun_two_jobs_and_the_sweep_summary(tmp_path):
    args = [
        "-m",
        *FAST,
        "trainer.max_epochs=1",
        "distill.alpha=0.3,0.7",
        f"hydra.sweep.dir={tmp_path}/sweep",
        "+hydra.callbacks.summary._target_=ovo.training.sweep.SweepSummary",
    ]
    proc = run_cli("ovo.train", args, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, alpha in ((0, 0.3), (1, 0.7)):
        job_dir = tmp_path / "sweep" / str(job)
        assert (job_dir / "checkpoints" / "last.ckpt").is_file()
        ckpt = torch.load(job_dir / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["hyper_parameters"]["distill"]["alpha"] == alpha
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert sorted(r["job"] for r in summary["jobs"]) == ["0", "1"]
    means = [r["panel_mean_acc1"] for r in summary["jobs"]]
    assert means == sorted(means, reverse=True) and all(0 <= m <= 100 for m in means)
    for row in summary["jobs"]:
        panel = json.loads((tmp_path / "sweep" / row["job"] / "panel.json").read_text())["panel"]
        assert row["panel_mean_acc1"] == pytest.approx(
            100 * sum(v["acc1"] for v in panel.values()) / len(panel)
        )
    assert "distill.alpha=" in (tmp_path / "sweep" / "summary.md").read_text()
    assert "panel mean" in proc.stdout


def test_module_checkpoint_is_self_describing(tmp_path):
    cfg = compose_cfg("train", FAST + ["trainer.max_epochs=1"], tmp_path)
    train(cfg)
    module = OVOModule.load_from_checkpoint(tmp_path / "checkpoints/last.ckpt", weights_only=True)
    assert module.space.name == "nano" and module.vit_cfg.patch_size == 8


@pytest.mark.slow  # 2 jobs x 2 processes: run by `make test-slow` (CI runs it)
def test_multirun_with_ddp_runs_each_job_once_on_both_ranks(tmp_path):
    args = [
        "-m",
        *FAST,
        "trainer.max_epochs=1",
        "trainer.devices=2",
        "trainer.strategy=ovo_ddp",
        "distill.alpha=0.3,0.7",
        f"hydra.sweep.dir={tmp_path}/sweep",
        "arch_trace_path=${paths.output_dir}/trace",
    ]
    proc = run_cli("ovo.train", args, tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == ["0", "1"]
    for job, alpha in ((0, 0.3), (1, 0.7)):
        job_dir = tmp_path / "sweep" / str(job)
        traces = [
            [
                json.loads(line)
                for line in (job_dir / f"trace.rank{r}.jsonl").read_text().splitlines()
            ]
            for r in (0, 1)
        ]
        assert len(traces[0]) == len(traces[1]) == (128 - 40) // 2 // 16  # one epoch, once
        for r0, r1 in zip(*traces):
            assert r0["distill"]["alpha"] == r1["distill"]["alpha"] == alpha
            assert (r0["teacher"], r0["students"]) == (r1["teacher"], r1["students"])
        ckpt = torch.load(job_dir / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["hyper_parameters"]["distill"]["alpha"] == alpha


def test_short_real_cifar10_run_beats_chance(tmp_path):
    from data_fixtures import CIFAR10_ZIP, extract_cifar10_subset

    if not CIFAR10_ZIP.is_file():
        pytest.skip(f"{CIFAR10_ZIP} is not on this machine")
    root = extract_cifar10_subset(tmp_path / "cifar10", {"train": 100, "test": 30})
    cfg = compose_cfg(
        "train",
        [
            "data=imagefolder",
            f"data.root={root}",
            "data.val_split=test",
            "data.num_classes=10",
            "data.img_size=32",
            "data.batch_size=50",
            "data.num_workers=0",
            "data.search_per_class=5",
            "data.aug.auto_augment=null",
            "data.aug.re_prob=0.0",
            "data.pin_memory=false",
            "data.persistent_workers=false",
            "space=nano",
            "model.patch_size=8",
            "model.drop_path_rate=0.0",
            "trainer=cpu",
            "logger=csv",
            "trainer.max_epochs=8",
            "optimizer.lr=8e-3",
            "scheduler.warmup_epochs=1",
            "mixup.mixup_alpha=0.0",
            "mixup.cutmix_alpha=0.0",
            "panel.num_random=4",
            "callbacks.progress_bar=null",
            "callbacks.model_summary=null",
        ],
        tmp_path / "run",
    )
    summary = train(cfg)
    panel = summary["panel"]
    assert len(panel) == 6
    mean = sum(p["acc1"] for p in panel.values()) / len(panel)
    assert mean > 0.2, panel  # chance is 0.1 (300 real test images)
