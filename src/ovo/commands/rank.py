"""``python -m ovo.rank ckpt_path=... archs=[band:12@0.5M,stratified:6]``: does the supernet rank
subnets the way training them alone does, does it beat the rankings that cost nothing, and how
far are inherited weights from retrained ones?

For every arch: its accuracy with inherited weights; its accuracy trained alone with the
checkpoint's own recipe (``python -m ovo.train fixed_arch=...`` with the recorded training config:
data, augmentation, schedule, epochs, global batch), one run per ``standalone.seeds``; and with
``finetune.epochs`` > 0, after a short finetune from its inherited weights (``init_from``). Every
accuracy is measured on the same ``split``, on one device.

The command plans the trainings, runs them through an :class:`ovo.jobs.Pool`, scores what they
trained and reports (:func:`ovo.ranking.report`, printed by :mod:`ovo.commands.rank_report`).
Standalone runs live in the recipe-keyed store of :mod:`ovo.standalone` (shared by every ranking
of a supernet with the same recipe); ``standalone.results=FILE`` supplies known ones.

Outputs in the run directory (``outputs/rank/<name>``): ``recipe.yaml`` (the training config the
standalone runs use), ``archs/<arch>.yaml``, ``finetune/<arch>/``, ``ranking.json`` (every number
and arch), ``ranking.png`` (inherited vs standalone accuracy, points sized by params) and a W&B
table. Running the command again skips every finished training (``done.json``) and resumes an
interrupted one from its ``last.ckpt``; a run directory of an earlier ovo, whose standalone runs
are in ``standalone/<arch>/seed<k>/``, is reused as it is.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from ovo import ranking
from ovo.archspec import parse_arch_groups
from ovo.atomic import atomic_write_json, atomic_write_text
from ovo.checkpoint import LoadedSupernet, load_supernet
from ovo.commands.base import hydra_command, hydra_value, open_checkpoint, output_dir
from ovo.commands.rank_report import publish
from ovo.data.splits import check_eval_split
from ovo.errors import ConfigError
from ovo.evaluation import EvalSettings, SubnetEvaluator, make_fabric
from ovo.jobs import Job, Pool, check_identity, claim, python_module, started
from ovo.settings import plain
from ovo.space import Arch
from ovo.standalone import load_results, recipe_key

RUN_DIR_PLACEHOLDER = "${hydra:runtime.output_dir}"
SCORES = "score.json"  # beside a training's done.json: its accuracy per split


@dataclass(frozen=True)
class Training:
    """One training ``ovo.rank`` needs: a standalone arch (one seed) or a finetune."""

    kind: str  # "standalone" | "finetune"
    name: str  # the arch's name
    seed: int
    job: Job


def check_settings(cfg: DictConfig) -> None:
    if cfg.jobs < 1:
        raise ConfigError(f"jobs={cfg.jobs} must be at least 1")
    check_eval_split(cfg.split)
    if not cfg.standalone.seeds:
        raise ConfigError("standalone.seeds is empty: give at least one training seed")
    if cfg.finetune.epochs < 0 or cfg.finetune.lr_scale <= 0:
        raise ConfigError("finetune.epochs must be >= 0 and finetune.lr_scale > 0")
    for key in ("top_k", "bins", "bootstrap"):
        if cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]} must be at least 1")
    if cfg.threads_per_job is not None and cfg.threads_per_job < 1:
        raise ConfigError(f"threads_per_job={cfg.threads_per_job} must be at least 1 or null")
    if str(cfg.eval.devices) not in ("1", "auto") or cfg.eval.num_nodes != 1:
        raise ConfigError(
            "ovo.rank scores on one device (eval.devices=1); its trainings run side by side "
            "with jobs=N, one per GPU when there are several"
        )


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
    cfg: DictConfig,
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
    cfg: DictConfig,
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


def run(cfg: DictConfig) -> dict[str, Any]:
    check_settings(cfg)
    # one device: with eval.devices=auto on a machine with several GPUs, a launched Fabric would
    # run this whole command (all its trainings) once per GPU
    eval_settings = replace(EvalSettings.from_dict(cfg.eval), devices=1)
    loaded = open_checkpoint(cfg)
    recipe = loaded.rerun_config(RUN_DIR_PLACEHOLDER)  # refuses format-1 checkpoints
    groups = parse_arch_groups(cfg.archs, loaded.space, cfg.seed, "archs", cost=loaded.net.cost)
    archs = {name: arch for name, (arch, _) in groups.items()}
    if len(archs) < 2:
        raise ConfigError(f"archs={plain(cfg.archs)} names {len(archs)} arch; ranking needs 2+")
    results = cfg.standalone.get("results")
    known = load_results(results, cfg.split) if results else {}
    out = output_dir()
    identity = {
        "checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "standalone_overrides": [str(o) for o in cfg.standalone.overrides],
    }
    check_rank_dir(out, archs, identity)
    trainings, stores = plan(cfg, loaded, archs, out, known)
    pool = Pool(int(cfg.jobs), cfg.threads_per_job, tag="rank")
    pool.check([t.job for t in trainings])  # before anything is written or trained

    dm = loaded.datamodule(cfg.get("data"))
    fabric = make_fabric(eval_settings)
    loader = dm.eval_dataloader(cfg.split)
    evaluator = SubnetEvaluator(
        loaded.net,
        loader,
        fabric,
        cache=eval_settings.cache,
        max_batches=eval_settings.max_batches,
    )
    scores = evaluator.evaluate(list(archs.values()), progress=True)
    inherited = {name: 100 * s.acc1 for name, s in zip(archs, scores)}
    images = scores[0].num_images

    claim(out, identity, "a ranking")
    write_inputs(out, recipe, archs, stores)
    pool.run([t.job for t in trainings])
    # the trained weights are scored in a copy, so the supernet stays as loaded
    scorer = SubnetEvaluator(
        load_supernet(cfg.ckpt_path).net,
        loader,
        fabric,
        cache=True,
        max_batches=eval_settings.max_batches,
    )
    scored = {(t.kind, t.name, t.seed): score(t, scorer, cfg.split, images) for t in trainings}
    for name, arch in archs.items():
        for seed in (int(s) for s in cfg.standalone.seeds):
            if (arch, seed) in known:
                scored[("standalone", name, seed)] = {**known[(arch, seed)], "wall_s": None}

    rows = rows_of(cfg, loaded, groups, inherited, scored)
    summary = ranking.report(
        rows,
        bins=int(cfg.bins),
        top_k=int(cfg.top_k),
        resamples=int(cfg.bootstrap),
        seed=int(cfg.seed),
    )
    if "finetune" in summary:
        summary["finetune"] = {"epochs": int(cfg.finetune.epochs), **summary["finetune"]}
    result = {
        "rows": rows,
        "summary": summary,
        "checkpoint": str(cfg.ckpt_path),
        "space": loaded.space.name,
        "split": cfg.split,
        "images": images,
        "archs_spec": plain(cfg.archs),
        "standalone": plain(cfg.standalone),
        "standalone_store": {name: str(path) for name, (path, _) in stores.items()},
        "finetune": plain(cfg.finetune),
        "recipe": loaded.recipe,
        "format": "ovo.rank",
        "version": 1,
    }
    atomic_write_json(out / "ranking.json", ranking.json_safe(result))
    publish(cfg, out, result, loaded.space.name)
    return result


main = hydra_command("rank", run)
