"""What ``python -m ovo.rank`` trains, scores and tabulates: the plan of standalone and finetune
trainings (each a resumable :class:`ovo.jobs.Job` keyed into the store of
:mod:`ovo.ranking.standalone`), the files they read, the score of each finished training, and one
row per arch for :func:`ovo.ranking.stats.report`."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ovo.atomic import atomic_write_json, atomic_write_text
from ovo.checkpoint import LoadedSupernet, load_supernet
from ovo.errors import ConfigError
from ovo.jobs import Job, check_identity, hydra_value, python_module, started
from ovo.ranking.standalone import recipe_key
from ovo.scoring import SubnetEvaluator
from ovo.space import Arch

RUN_DIR_PLACEHOLDER = "${hydra:runtime.output_dir}"
SCORES = "score.json"  # beside a training's done.json: its accuracy per split


@dataclass(frozen=True)
class Training:
    """One training ``ovo.rank`` needs: a standalone arch (one seed) or a finetune."""

    kind: str  # "standalone" | "finetune"
    name: str  # the arch's name
    seed: int
    job: Job


def recipe_overrides(recipe: dict[str, Any]) -> list[str]:
    """Overrides that keep the recipe's global batch on one device: the recorded run's devices
    become gradient accumulation steps, so LR scaling and steps per epoch stay as they were."""
    steps = int(recipe["world_size"]) * int(recipe["accumulate_grad_batches"])
    if steps == 1:
        return []
    return [
        "trainer.devices=1",
        "trainer.num_nodes=1",
        "trainer.strategy=auto",
        f"trainer.accumulate_grad_batches={steps}",
    ]


def training(
    kind: str,
    name: str,
    seed: int,
    run_dir: Path,
    config_dir: Path,
    overrides: list[str],
    identity: dict[str, Any],
) -> Training:
    """``python -m ovo.train`` of ``config_dir/recipe.yaml`` into ``run_dir``, resumable."""
    argv = python_module(
        "ovo.train",
        "--config-dir",
        str(config_dir),
        "--config-name",
        "recipe",
        f"hydra.run.dir={hydra_value(run_dir)}",
        *overrides,
    )
    job = Job(
        f"{kind} {name} seed {seed}",
        tuple(argv),
        run_dir,
        identity,
        log_name="train.log",
        resume_file="checkpoints/last.ckpt",
        resume_args=("ckpt_path=last",),
    )
    return Training(kind, name, seed, job)


def plan(
    cfg: Mapping[str, Any],
    loaded: LoadedSupernet,
    archs: dict[str, Arch],
    out: Path,
    known: dict[tuple[Arch, int], dict[str, Any]],
) -> tuple[list[Training], dict[str, tuple[Path, dict[str, Any]]]]:
    """Every training the command needs, standalone first (in arch order), then finetunes; and
    each arch's store entry (its directory and what its key digests). A known (arch, seed) is
    not trained; one an earlier ovo trained in this run directory (``standalone/<arch>/seed<k>``)
    is reused there, with the identity that ovo recorded."""
    checkpoint = str(Path(cfg.ckpt_path).resolve())
    base = ["distill.teacher=none", "distill.subnets_per_step=1"]
    base += recipe_overrides(loaded.recipe)
    user = [str(o) for o in cfg.standalone.overrides]
    config = loaded.rerun_config(RUN_DIR_PLACEHOLDER)
    store = Path(cfg.standalone.store)
    jobs, stores = [], {}
    for name, arch in archs.items():
        key, content = recipe_key(config, loaded.recipe, arch, user)
        stores[name] = (store / key, content)
        for seed in (int(s) for s in cfg.standalone.seeds):
            if (arch, seed) in known:
                continue
            legacy = out / "standalone" / name / f"seed{seed}"
            if started(legacy):
                overrides = [*base, f"fixed_arch={hydra_value(out / 'archs' / f'{name}.yaml')}"]
                overrides += [f"seed={seed}", *user]
                identity = {
                    "checkpoint": checkpoint,
                    "arch": arch.to_dict(),
                    "overrides": overrides,
                }
                jobs.append(training("standalone", name, seed, legacy, out, overrides, identity))
                continue
            overrides = [*base, f"fixed_arch={hydra_value(store / key / 'arch.yaml')}"]
            overrides += [f"seed={seed}", *data_seed(config, seed), *user]
            identity = {"kind": "standalone", "key": key, "seed": seed}
            run_dir = store / key / f"seed{seed}"
            jobs.append(
                training("standalone", name, seed, run_dir, store / key, overrides, identity)
            )
    if cfg.finetune.epochs > 0:
        lr = loaded.optimizer_lr * float(cfg.finetune.lr_scale)
        for name, arch in archs.items():
            overrides = [
                *base,
                f"fixed_arch={hydra_value(out / 'archs' / f'{name}.yaml')}",
                f"init_from={hydra_value(checkpoint)}",
                f"trainer.max_epochs={int(cfg.finetune.epochs)}",
                "scheduler.warmup_epochs=0",
                f"optimizer.lr={lr}",
                *cfg.finetune.overrides,
            ]
            identity = {"checkpoint": checkpoint, "arch": arch.to_dict(), "overrides": overrides}
            jobs.append(
                training("finetune", name, 0, out / "finetune" / name, out, overrides, identity)
            )
    return jobs, stores


def data_seed(config: dict[str, Any], seed: int) -> list[str]:
    """The data's shuffling/augmentation seed pinned to the run's own: the recorded config holds
    it resolved to the supernet's seed, which is not part of a standalone run's identity (a run
    is then what ``python -m ovo.train fixed_arch=... seed=K`` trains)."""
    return [f"data.seed={seed}"] if "seed" in config.get("data", {}) else []


def check_rank_dir(out: Path, archs: dict[str, Arch], identity: dict[str, Any]) -> None:
    """Refuse a run directory of another ranking (the same ``name=`` reused with another
    checkpoint or standalone recipe: ``job.json``; or another arch under one of these names),
    before anything is written."""
    check_identity(out, identity, "a ranking")
    for name, arch in archs.items():
        path = out / "archs" / f"{name}.yaml"
        if path.is_file() and Arch.from_yaml(path) != arch:
            raise ConfigError(
                f"{out} ranks another arch under the name {name} ({path}): this run directory "
                "belongs to another ranking; pass another name= (or delete it to start over)"
            )


def write_inputs(
    out: Path,
    recipe: dict[str, Any],
    archs: dict[str, Arch],
    stores: dict[str, tuple[Path, dict[str, Any]]],
) -> None:
    """The files the trainings read: the rank dir's recipe and archs, and each store entry's
    (written once: a store entry is shared by rankings)."""
    text = yaml.safe_dump(recipe, sort_keys=False)
    atomic_write_text(out / "recipe.yaml", text)
    for name, arch in archs.items():
        atomic_write_text(out / "archs" / f"{name}.yaml", arch.to_yaml())
        entry, content = stores[name]
        if not (entry / "key.json").is_file():  # key.json last: it marks a complete entry
            atomic_write_text(entry / "recipe.yaml", text)
            atomic_write_text(entry / "arch.yaml", arch.to_yaml())
            atomic_write_json(entry / "key.json", {"key": entry.name, **content})


def score(t: Training, scorer: SubnetEvaluator, split: str, images: int) -> dict[str, Any]:
    """A finished training's accuracy on ``split``: from an earlier ovo's ``done.json``, from its
    ``score.json``, or scored now from its ``last.ckpt`` (and kept in ``score.json``)."""
    done = t.job.done() or {}
    if "acc1" in done:  # written by an ovo.rank before ovo.jobs: scored on this run's split
        return {"acc1": done["acc1"], "images": done["images"], "wall_s": done.get("wall_s")}
    path = t.job.run_dir / SCORES
    scores = json.loads(path.read_text()) if path.is_file() else {}
    kept = scores.get(split)
    if not kept or kept["images"] != images:
        trained = load_supernet(t.job.run_dir / "checkpoints" / "last.ckpt")
        scorer.net.load_state_dict(trained.net.state_dict())
        s = scorer.evaluate([Arch.from_dict(trained.fixed_arch)])[0]
        kept = {"acc1": 100 * s.acc1, "acc5": 100 * s.acc5, "images": s.num_images}
        atomic_write_json(path, {**scores, split: kept})
    return {**kept, "wall_s": done.get("wall_s")}


def rows_of(
    cfg: Mapping[str, Any],
    loaded: LoadedSupernet,
    groups: dict[str, tuple[Arch, str]],
    inherited: dict[str, float],
    scored: dict[tuple[str, str, int], dict[str, Any]],
) -> list[dict[str, Any]]:
    """One row per arch: sizes, group, inherited / standalone (mean over seeds) / finetuned."""
    net, rows = loaded.net, []
    seeds = [int(s) for s in cfg.standalone.seeds]
    for name, (arch, group) in groups.items():
        per_seed = [scored[("standalone", name, s)]["acc1"] for s in seeds]
        mean = statistics.fmean(per_seed)
        row = {
            "name": name,
            "group": group,
            "arch": arch.short(),
            "params": net.num_params(arch),
            "macs": net.num_macs(arch),
            "depth": arch.depth,
            "inherited_acc1": inherited[name],
            "standalone_acc1": mean,
            "standalone_acc1_per_seed": per_seed,
            "standalone_wall_s": [scored[("standalone", name, s)]["wall_s"] for s in seeds],
            "gap": mean - inherited[name],
            "arch_config": arch.to_dict(),
        }
        if ("finetune", name, 0) in scored:
            tuned = scored[("finetune", name, 0)]
            row["finetuned_acc1"] = tuned["acc1"]
            row["finetune_gain"] = tuned["acc1"] - inherited[name]
            row["finetune_wall_s"] = tuned["wall_s"]
        rows.append(row)
    return rows
