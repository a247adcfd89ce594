"""Standalone trainings as ``ovo.rank`` keeps them: identified by their recipe, not by the supernet
that suggested them, so every ranking with the same recipe reuses what was paid for.

A standalone run is ``python -m ovo.train fixed_arch=ARCH seed=K`` with a supernet checkpoint's
recorded training config (:meth:`~ovo.checkpoint.LoadedSupernet.rerun_config`). Its key is a
digest (:func:`recipe_key`) of:

- that config, less what does not change the trained weights (:data:`IGNORED`): where files go
  (``paths``, run/log dirs), how a run is watched (``logger``, ``callbacks``, progress bars,
  log intervals), how data is fed (``num_workers``, ``pin_memory``, ...), the machine
  (``accelerator``, ``devices``, ``num_nodes``, ``strategy``; the global batch is kept through
  gradient accumulation and is in the key), what a supernet run alone uses (``distill``: a
  standalone run has no teacher; ``panel``; ``seed`` and ``data.seed``, which a standalone run
  sets to its own seed), what
  resumes or traces a run (``ckpt_path``, ``init_from``, ``arch_trace_path``) and the space's
  name;
- the recipe's global batch size and precision (the facts the trainer recorded);
- the arch and ``standalone.overrides``.

Everything else (data module and its settings, root included, augmentation, model, optimizer,
schedule, epochs, compile, clipping) is in the key: when in doubt a setting is kept, since a
missed reuse costs a training and a wrong one a wrong ranking.

The store (``standalone.store``, default ``${paths.log_dir}/rank_standalone``) holds
``<key>/key.json`` (what was digested), ``<key>/recipe.yaml``, ``<key>/arch.yaml`` and one run
directory per seed, ``<key>/seed<k>/`` (``done.json``, ``score.json``, ``train.log``, the
checkpoints).

Known results: ``standalone.results=FILE`` reads an earlier ``ranking.json`` or a JSON list of
per-run records ``{"arch": {...}, "seed": K, "acc1": A, "split": S, "images": N}`` (other keys
ignored); a known (arch, seed) on the ranking's split is not trained again.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ovo.errors import ConfigError
from ovo.space import Arch

KEY_VERSION = 1
# (top-level keys, dotted keys) of the training config that do not change a standalone run
IGNORED = (
    {
        "task_name",
        "seed",
        "ckpt_path",
        "init_from",
        "arch_trace_path",
        "fixed_arch",
        "test_after_fit",
        "panel",
        "distill",
        "logger",
        "callbacks",
        "paths",
        "hydra",
        "wandb",
        "tags",
    },
    {
        "space.name",
        "data.seed",
        "data.num_workers",
        "data.pin_memory",
        "data.persistent_workers",
        "data.eval_batch_size",
        "trainer.default_root_dir",
        "trainer.accelerator",
        "trainer.devices",
        "trainer.num_nodes",
        "trainer.strategy",
        "trainer.accumulate_grad_batches",
        "trainer.precision",
        "trainer.log_every_n_steps",
        "trainer.check_val_every_n_epoch",
        "trainer.enable_progress_bar",
        "trainer.enable_model_summary",
        "trainer.use_distributed_sampler",
    },
)


def recipe_key(
    config: Mapping[str, Any],
    facts: Mapping[str, Any],
    arch: Arch,
    overrides: Sequence[str],
) -> tuple[str, dict[str, Any]]:
    """(digest, what was digested) of the standalone run of ``arch`` with the training
    ``config`` and recipe ``facts`` (:func:`~ovo.checkpoint.training_recipe`)."""
    top, dotted = IGNORED
    kept = {k: copy.deepcopy(v) for k, v in config.items() if k not in top}
    for path in dotted:
        group, _, name = path.partition(".")
        if isinstance(kept.get(group), dict):
            kept[group].pop(name, None)
    content = {
        "version": KEY_VERSION,
        "config": kept,
        "global_batch_size": int(facts["global_batch_size"]),
        "precision": str(facts["precision"]),
        "arch": arch.to_dict(),
        "overrides": [str(o) for o in overrides],
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], content


def _arch_key(data: Mapping[str, Any]) -> Arch:
    return Arch.from_dict({k: data[k] for k in ("embed_dim", "depth", "num_heads", "mlp_ratio")})


def load_results(path: str | Path, split: str) -> dict[tuple[Arch, int], dict[str, Any]]:
    """Known standalone accuracies on ``split`` by (arch, seed): from an ``ovo.rank``
    ``ranking.json`` or a JSON list of per-run records (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"standalone.results={path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"standalone.results={path} is not JSON ({err})") from err
    records: list[Mapping[str, Any]] = []
    try:
        if isinstance(data, dict) and data.get("format") == "ovo.rank":
            seeds = [int(s) for s in data["standalone"]["seeds"]]
            for row in data["rows"]:
                for seed, acc in zip(seeds, row["standalone_acc1_per_seed"]):
                    arch = row["arch_config"]
                    split_, images = data["split"], data["images"]
                    records.append(
                        dict(arch=arch, seed=seed, acc1=acc, split=split_, images=images)
                    )
        elif isinstance(data, list):
            records = data
        else:
            raise TypeError("neither")
        known = {}
        for r in records:
            if r["split"] != split:
                continue
            record = {
                "acc1": float(r["acc1"]),
                "images": int(r["images"]),
                "source": str(path),
            }
            known[(_arch_key(r["arch"]), int(r["seed"]))] = record
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(
            f"standalone.results={path}: not an ovo.rank ranking.json nor a list of records "
            '{"arch": {embed_dim, depth, num_heads, mlp_ratio}, "seed", "acc1", "split", '
            f'"images"}} ({type(err).__name__}: {err})'
        ) from err
    return known
