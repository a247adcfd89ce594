"""``python -m ovo.rank ckpt_path=... archs=[band:12@0.5M,stratified:6]``: does the supernet rank
subnets the way training them alone does, does it beat the rankings that cost nothing, and how
far are inherited weights from retrained ones?

For every arch: its accuracy with inherited weights; its accuracy trained alone with the
checkpoint's own recipe (``python -m ovo.train fixed_arch=...`` with the recorded training config:
data, augmentation, schedule, epochs, global batch), one run per ``standalone.seeds``; and with
``finetune.epochs`` > 0, after a short finetune from its inherited weights (``init_from``). Every
accuracy is measured on the same ``split``, on one device.

The command plans the trainings, runs them through an :class:`ovo.jobs.Pool`, scores what they
trained and reports (:func:`ovo.ranking.stats.report`, printed by :mod:`ovo.commands.rank_report`).
Standalone runs live in the recipe-keyed store of :mod:`ovo.ranking.standalone` (shared by every ranking
of a supernet with the same recipe); ``standalone.results=FILE`` supplies known ones.

Outputs in the run directory (``outputs/rank/<name>``): ``recipe.yaml`` (the training config the
standalone runs use), ``archs/<arch>.yaml``, ``finetune/<arch>/``, ``ranking.json`` (every number
and arch), ``ranking.png`` (inherited vs standalone accuracy, points sized by params) and a W&B
table. Running the command again skips every finished training (``done.json``) and resumes an
interrupted one from its ``last.ckpt``; a run directory of an earlier ovo, whose standalone runs
are in ``standalone/<arch>/seed<k>/``, is reused as it is.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ovo.archspec import parse_arch_groups
from ovo.atomic import atomic_write_json
from ovo.commands.cli import hydra_command, output_dir
from ovo.commands.from_checkpoint import open_checkpoint
from ovo.commands.rank_report import publish
from ovo.data.splits import check_eval_split
from ovo.errors import ConfigError
from ovo.jobs import Pool, claim
from ovo.ranking import stats as ranking
from ovo.ranking.plan import RUN_DIR_PLACEHOLDER, check_rank_dir, plan, rows_of, score, write_inputs
from ovo.ranking.standalone import load_results
from ovo.scoring import EvalSettings, SubnetEvaluator, make_fabric
from ovo.settings import plain


def check_settings(cfg: DictConfig) -> None:
    """The settings ``jobs`` and ``threads_per_job`` aside (the :class:`Pool` checks those)."""
    check_eval_split(cfg.split)
    if not cfg.standalone.seeds:
        raise ConfigError("standalone.seeds is empty: give at least one training seed")
    if cfg.finetune.epochs < 0 or cfg.finetune.lr_scale <= 0:
        raise ConfigError("finetune.epochs must be >= 0 and finetune.lr_scale > 0")
    for key in ("top_k", "bins", "bootstrap"):
        if cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]} must be at least 1")
    if str(cfg.eval.devices) not in ("1", "auto") or cfg.eval.num_nodes != 1:
        raise ConfigError(
            "ovo.rank scores on one device (eval.devices=1); its trainings run side by side "
            "with jobs=N, one per GPU when there are several"
        )


def run(cfg: DictConfig) -> dict[str, Any]:
    pool = Pool(int(cfg.jobs), cfg.threads_per_job, tag="rank")
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
        copy.deepcopy(loaded.net),
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
