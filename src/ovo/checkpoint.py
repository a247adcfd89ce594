"""Load a training checkpoint into a bare :class:`SuperViT`, safely and with clear errors.

Training checkpoints are Lightning ``.ckpt`` files written by ``ovo.train``; they carry the
space and model settings in ``hyper_parameters``, so nothing else is needed to rebuild the
supernet. Loading uses ``torch.load(weights_only=True)``: no code from the file runs.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ovo.errors import CheckpointError
from ovo.space import SearchSpace
from ovo.supernet import SuperViT, ViTConfig


@dataclass
class LoadedSupernet:
    net: SuperViT
    hparams: dict[str, Any]
    path: Path
    epoch: int | None = None
    global_step: int | None = None

    @property
    def space(self) -> SearchSpace:
        return self.net.space

    @property
    def cfg(self) -> ViTConfig:
        return self.net.cfg


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one clear error for every way it can fail."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist (training writes them to "
            "<run dir>/checkpoints/{last,best-*}.ckpt)"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
    ) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, corrupt or not a "
            f"torch file: {first[:200]}); use a .ckpt written by ovo.train"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{path} is not an ovo training checkpoint (no state_dict/"
            "hyper_parameters); use a .ckpt written by ovo.train"
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
    prefix = "net."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path} does not match the supernet its settings describe "
            f"({str(err).splitlines()[0][:200]}); the file may be from another "
            "ovo version or edited"
        ) from err
    return LoadedSupernet(net.eval(), hp, Path(path), ckpt.get("epoch"), ckpt.get("global_step"))
