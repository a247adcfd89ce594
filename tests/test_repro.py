"""The CIFAR-10 reproduction: its preset trains on the real images, its script runs end to end."""

import json

import pytest

from ovo.commands.train import train

from data_fixtures import CIFAR10_ZIP, extract_cifar10_subset
from helpers import compose_cfg, load_bench_script

needs_cifar10 = pytest.mark.skipif(
    not CIFAR10_ZIP.is_file(), reason=f"{CIFAR10_ZIP} is not on this machine"
)


def _load_script():
    return load_bench_script("repro_cifar10.py", "ovo_repro_cifar10", "studies")


@needs_cifar10
def test_repro_preset_runs_a_few_steps_on_real_cifar10(tmp_path):
    root = extract_cifar10_subset(tmp_path / "cifar10", {"train": 20, "test": 5})
    cfg = compose_cfg(
        "train",
        [
            "experiment=repro_cifar10_nano",
            f"data.root={root}",
            "data.search_per_class=2",
            "data.batch_size=16",
            "+trainer.max_steps=3",
            "+trainer.limit_val_batches=1",
            "logger=csv",
            "callbacks.progress_bar=null",
            "callbacks.model_summary=null",
        ],
        tmp_path / "run",
    )
    # the preset's choices, as the README and the closing note state them
    assert (cfg.space.name, cfg.model.patch_size, cfg.data.img_size) == ("nano", 8, 32)
    assert cfg.trainer.max_epochs == 6 and cfg.distill.teacher == "sampled"
    summary = train(cfg)
    assert summary["metrics"]["train/loss"] > 0
    assert set(summary["panel"]) == {"min", "max"}


def test_repro_methods_differ_only_in_distillation_and_pin_every_setting():
    from ovo.training.distill import DistillConfig

    repro = _load_script()
    assert {"autoformer", "autoformer_x2", "ovo", "ovo_max", "ovo_a05", "ovo_adiv"} <= set(
        repro.METHODS
    )
    keys = set(DistillConfig.__dataclass_fields__)
    for overrides in repro.METHODS.values():
        assert all(o.startswith("distill.") for o in overrides)
        assert {o.split("=")[0].removeprefix("distill.") for o in overrides} == keys
    # pinned at today's defaults: `ovo` is the default config, whatever the defaults become
    assert repro.PINNED == {k: getattr(DistillConfig(), k) for k in keys}


def test_paired_statistics_and_the_alpha_rule():
    repro = _load_script()

    def run(mean):
        return {"split_panel_mean_acc1": {"val": mean}, "panel_mean_acc1": mean}

    data = {
        "preset": "repro_cifar10_gpu",
        "seeds": {
            "0": {"ovo": run(69.0), "ovo_a05": run(69.5)},
            "1": {"ovo": run(70.0), "ovo_a05": run(70.9)},
            "2": {"ovo": run(65.0), "ovo_a05": run(65.1)},
        },
    }
    pair = repro.paired(data, "ovo_a05", "ovo")
    assert pair["per_seed"] == pytest.approx({"0": 0.5, "1": 0.9, "2": 0.1})
    assert pair["mean"] == pytest.approx(0.5) and pair["se"] == pytest.approx(0.4 / 3**0.5)
    assert (pair["wins"], pair["losses"]) == (3, 0) and pair["sign_test_p"] == pytest.approx(0.25)
    assert repro.alpha_rule(data)["default_alpha"] == 0.5  # won every seed
    data["seeds"]["2"]["ovo_a05"] = run(64.0)
    rule = repro.alpha_rule(data)
    assert rule["decided"] and rule["default_alpha"] == 1.0  # lost one; +0.13 < 2 SE
    del data["seeds"]["2"]
    assert not repro.alpha_rule(data)["decided"]  # two seeds are not enough


@needs_cifar10
def test_repro_runner_smoke_gpu_preset_on_cpu(tmp_path):
    root = extract_cifar10_subset(tmp_path / "cifar10", {"train": 12, "test": 4})
    repro = _load_script()
    out = tmp_path / "repro"
    repro.main(
        [
            "--preset",
            "repro_cifar10_gpu",
            "--methods",
            "ovo",
            "ovo_a05",
            "--panel-only",
            "--jobs",
            "2",
            "--out",
            str(out),
            *[
                arg
                for o in (
                    "trainer=cpu",
                    f"data.root={root}",
                    "data.search_per_class=2",
                    "data.val_per_class=2",
                    "data.batch_size=16",
                    "data.num_workers=0",
                    "data.persistent_workers=false",
                    "trainer.max_epochs=1",
                    "trainer.check_val_every_n_epoch=1",
                )
                for arg in ("--train-override", o)
            ],
        ]
    )
    report = json.loads((out / "report.json").read_text())
    seed = report["seeds"]["0"]
    assert report["preset"] == "repro_cifar10_gpu" and report["reported_split"] == "test"
    assert set(seed["ovo"]["split_panel_mean_acc1"]) == {"val", "test"}
    assert (out / "seed0" / "ovo" / "panel_test" / "done.json").is_file()
    text = (out / "report.md").read_text()
    assert "ovo_a05 - ovo" in text and "not decided" in text and report["hardware"]["torch"]


@pytest.mark.slow
@needs_cifar10
def test_repro_script_end_to_end_on_a_tiny_subset(tmp_path):
    root = extract_cifar10_subset(tmp_path / "cifar10", {"train": 12, "test": 4})
    repro = _load_script()
    out = tmp_path / "repro"
    argv = [
        "--methods",
        "autoformer",
        "ovo",
        "--jobs",
        "2",
        "--generations",
        "2",
        "--search-override",
        "population=8",
        "--search-override",
        "parents=4",
        "--search-override",
        "mutations=2",
        "--search-override",
        "crossovers=2",
        "--params-max",
        "0.6M",
        "--out",
        str(out),
        "--train-override",
        f"data.root={root}",
        "--train-override",
        "data.search_per_class=2",
        "--train-override",
        "data.batch_size=16",
        "--train-override",
        "trainer.max_epochs=1",
    ]
    repro.main(argv)
    report = json.loads((out / "report.json").read_text())
    seed = report["seeds"]["0"]
    assert set(seed) == {"autoformer", "ovo"}
    for method in seed.values():
        assert len(method["panel"]) == 2 + repro.PANEL_RANDOM
        assert method["found"]["params"] <= 600_000
        assert 0 <= method["found"]["scratch_acc1"] <= 100
    # both methods score the same panel archs
    assert [r["arch"] for r in seed["autoformer"]["panel"].values()] == [
        r["arch"] for r in seed["ovo"]["panel"].values()
    ]
    assert (out / "acc_vs_params.png").stat().st_size > 0
    assert "panel mean" in (out / "report.md").read_text()
    # a second run resumes: every stage is done, nothing is recomputed
    done = sorted(p.stat().st_mtime_ns for p in out.rglob("done.json"))
    repro.main(argv)
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("done.json")) == done


def test_repro_stages_run_through_the_job_pool_and_trainings_resume(tmp_path):
    from ovo.jobs import Job

    repro = _load_script()
    train = repro.stage("train", repro.train_cmd(tmp_path / "t", 0, [], []), tmp_path / "t")
    panel = repro.stage(
        "panel", repro.evaluate_cmd(tmp_path / "c", "min", tmp_path / "p", []), tmp_path / "p"
    )
    assert isinstance(train, Job) and train.log_name == "stage.log"
    assert train.command()[-1] != "ckpt_path=last"
    (tmp_path / "t" / "checkpoints").mkdir(parents=True)
    (tmp_path / "t" / "checkpoints" / "last.ckpt").write_text("")
    (tmp_path / "p" / "checkpoints").mkdir(parents=True)
    (tmp_path / "p" / "checkpoints" / "last.ckpt").write_text("")
    assert train.command()[-1] == "ckpt_path=last"  # an interrupted training resumes
    assert panel.command() == list(panel.argv)  # an evaluation just runs again
