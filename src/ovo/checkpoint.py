"""The training checkpoint format, in both directions: what ``ovo.train`` records in a checkpoint,
and how the search, evaluation, export, ranking and notebooks rebuild supernet and data from it.

A checkpoint is Lightning's ``.ckpt``, read with ``torch.load(weights_only=True)`` (no code from
the file runs). What ovo reads from it:

- ``state_dict``: the supernet's weights as ``net.<timm-style name>``;
- ``hyper_parameters``: the :class:`~ovo.training.module.OVOModule`'s arguments, of which ``space`` and
  ``model`` rebuild the supernet and ``data`` (the data config) the data module, with the same
  held-out search split;
- ``ovo`` (format version 2 on; absent in version 1, before it existed): the training
  ``config`` as composed and resolved, and the ``recipe`` facts only the running trainer knows
  (world size, so the global batch the LR was scaled with; epochs; precision). ``ovo.rank``
  trains standalone subnets with that recipe.

:class:`RecordTraining` (a callback the train command adds) writes the ``ovo`` record;
:func:`load_supernet` reads everything back.
"""

from __future__ import annotations

import copy
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf

from ovo.data import ImageClassificationDataModule, datamodule_from_config
from ovo.errors import CheckpointError
from ovo.settings import plain
from ovo.space import SearchSpace
from ovo.supernet import SuperViT, ViTConfig

RECORD_KEY = "ovo"
CHECKPOINT_FORMAT = "ovo.checkpoint"
CHECKPOINT_VERSION = 2  # 1: hyper_parameters only (before the `ovo` record)
STATE_PREFIX = "net."


def training_recipe(trainer: L.Trainer, config: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of a run that its config alone does not say (they depend on the machine)."""
    batch = int(config["data"]["batch_size"])
    world, accumulate = int(trainer.world_size), int(trainer.accumulate_grad_batches)
    return {
        "max_epochs": int(trainer.max_epochs or 0),
        "per_device_batch_size": batch,
        "world_size": world,
        "accumulate_grad_batches": accumulate,
        "global_batch_size": batch * world * accumulate,
        "precision": str(trainer.precision),
    }


class RecordTraining(L.Callback):
    """Writes the ``ovo`` record (format, training config, recipe) into every checkpoint.

    ``hyper_parameters["data"]`` stays as format 1 had it, for readers of that layout.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = plain(config)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[RECORD_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config,
            "recipe": training_recipe(trainer, self.config),
        }
        checkpoint["hyper_parameters"]["data"] = self.config["data"]


@dataclass
class LoadedSupernet:
    """A trained supernet (eval mode) and what its checkpoint says about its training."""

    net: SuperViT
    hparams: dict[str, Any]
    path: Path
    epoch: int | None = None
    global_step: int | None = None
    record: dict[str, Any] | None = None  # the `ovo` record; None for format-1 checkpoints

    @property
    def space(self) -> SearchSpace:
        return self.net.space

    @property
    def cfg(self) -> ViTConfig:
        return self.net.cfg

    @property
    def recipe(self) -> dict[str, Any] | None:
        """:func:`training_recipe` of the run (format 2 on), else ``None``."""
        return self.record["recipe"] if self.record else None

    @property
    def optimizer_lr(self) -> float | None:
        """The training's configured optimizer LR (format 2 on), else ``None``."""
        return float(self.record["config"]["optimizer"]["lr"]) if self.record else None

    @property
    def fixed_arch(self) -> dict[str, Any] | None:
        """The arch a ``fixed_arch=`` training trained (its dict), else ``None``."""
        return self.hparams.get("fixed_arch")

    def rerun_config(self, output_dir: str | Path) -> dict[str, Any]:
        """The recorded training config made to run again into ``output_dir``: every value that
        pointed into the original run's directory (checkpoints, logs) is moved under
        ``output_dir``, and nothing is resumed (``ckpt_path``, ``init_from``, traces cleared).
        ``ovo.rank`` trains standalone subnets from it."""
        if self.record is None:
            raise CheckpointError(
                f"{self.path} has no ovo training record (it predates it, checkpoint format 1, "
                "or was saved weights-only): it does not say its training recipe; use a full "
                "checkpoint of this ovo, or train subnets yourself with python -m ovo.train "
                "fixed_arch=..."
            )
        config = copy.deepcopy(self.record["config"])
        old = str(config.get("paths", {}).get("output_dir") or "\0")
        new = str(output_dir)

        def rebase(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: rebase(v) for k, v in node.items()}
            if isinstance(node, list):
                return [rebase(v) for v in node]
            if isinstance(node, str) and (node == old or node.startswith(old + "/")):
                return new + node[len(old) :]
            return node

        config = rebase(config)
        config.update(ckpt_path=None, init_from=None, arch_trace_path=None)
        return config

    def data_config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The data config the supernet was trained with, ``overrides`` merged in."""
        data = self.hparams.get("data")
        if not data:
            raise CheckpointError(
                f"{self.path} records no data config (it predates ovo's data recording); pass "
                "the full data config as data=..."
            )
        merged = OmegaConf.merge(OmegaConf.create(data), OmegaConf.create(plain(overrides) or {}))
        return OmegaConf.to_container(merged, resolve=True)

    def datamodule(
        self, overrides: Mapping[str, Any] | None = None
    ) -> ImageClassificationDataModule:
        """The data module the checkpoint was trained with (the same held-out search split),
        with ``overrides`` (e.g. a new ``root``) merged in."""
        return datamodule_from_config(self.data_config(overrides))


def other_checkpoints(path: str | Path) -> str:
    """The ``.ckpt`` files beside ``path`` (newest first) as a hint for an error message: what
    the user can pass instead of a file that cannot be used."""
    path = Path(path)
    try:
        others = [p for p in path.parent.glob("*.ckpt") if p.name != path.name and p.is_file()]
        others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        others = []
    if not others:
        return f"no other checkpoint in {path.parent}"
    return f"other checkpoints in {path.parent}: {', '.join(p.name for p in others)}"


def check_checkpoint_path(path: str | Path, label: str = "checkpoint ") -> Path:
    """``path`` if it is a file; else a :class:`CheckpointError` that says what it is (missing,
    or a directory, with a checkpoint file found inside). ``label`` precedes the path in the
    message (e.g. ``"ckpt_path="``)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        # a run directory keeps them in checkpoints/; not a recursive walk (it may be huge)
        inside = [*sorted(path.glob("*.ckpt")), *sorted(path.glob("checkpoints/*.ckpt"))]
        inside.sort(key=lambda p: p.name != "last.ckpt")  # stable: last.ckpt first
        example = f", e.g. {inside[0]}" if inside else f" (none in it or in {path}/checkpoints)"
        raise CheckpointError(f"{label}{path} is a directory; pass the .ckpt file inside{example}")
    raise CheckpointError(
        f"{label}{path} does not exist (training writes them to "
        "<run dir>/checkpoints/{last,best-*}.ckpt)"
    )


def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one clear error for every way it can fail
    (an unreadable file's error lists the other checkpoints beside it). ``mmap`` maps the
    tensors instead of reading them: enough to check a file that something else will load."""
    path = check_checkpoint_path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
    ) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = first.split(". ")[0]  # torch appends paragraphs of advice
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, corrupt or not a "
            f"torch file: {first[:200]}); use a .ckpt written by ovo.train "
            f"({other_checkpoints(path)})"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{path} is not an ovo training checkpoint (no state_dict/"
            "hyper_parameters); use a .ckpt written by ovo.train"
        )
    record = ckpt.get(RECORD_KEY)
    if record is not None and int(record.get("version", 0)) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer ovo (checkpoint format {record.get('version')}, this "
            f"ovo reads up to {CHECKPOINT_VERSION}); upgrade ovo to read it"
        )
    return ckpt


def load_supernet(
    path: str | Path,
    expected_space: SearchSpace | None = None,
    map_location: str | torch.device = "cpu",
) -> LoadedSupernet:
    """Rebuild the supernet of an ovo training checkpoint, in eval mode.

    With ``expected_space``, a checkpoint of another space is refused (naming both spaces).
    """
    ckpt = read_checkpoint(path, map_location)
    hp = dict(ckpt["hyper_parameters"])
    if "space" not in hp or "model" not in hp:
        raise CheckpointError(
            f"{path} has no ovo space/model settings in its hyper_parameters; "
            "it was not written by ovo.train"
        )
    space = SearchSpace.from_dict(hp["space"])
    if expected_space is not None and expected_space != space:
        raise CheckpointError(
            f"{path} was trained on space '{space.name}' {space.to_dict()} but space "
            f"'{expected_space.name}' {expected_space.to_dict()} was asked for; drop the space "
            "override (the checkpoint's own space is used) or pick the matching checkpoint"
        )
    net = SuperViT(space, ViTConfig.from_dict(hp["model"]))
    n = len(STATE_PREFIX)
    state = {k[n:]: v for k, v in ckpt["state_dict"].items() if k.startswith(STATE_PREFIX)}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path} does not match the supernet its settings describe "
            f"({str(err).splitlines()[0][:200]}); the file may be from another "
            "ovo version or edited"
        ) from err
    return LoadedSupernet(
        net.eval(),
        hp,
        Path(path),
        ckpt.get("epoch"),
        ckpt.get("global_step"),
        ckpt.get(RECORD_KEY),
    )
