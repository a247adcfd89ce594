"""``warm_start=<earlier search dir>``: reuse every accuracy an earlier search measured.

A search records what its scores were measured with (``scored_with`` in its state): a hash of
the checkpoint's weights, the fitness split (its name, a hash of its image indices, its image
count) and ``eval.max_batches``. A later search of the same weights on the same split starts
with all of the earlier one's complete scores (:class:`~ovo.search.loop.Search`'s ``warm``) and
never scores those archs again: a front for a second device (another latency table, budget or
objectives) costs only the archs the earlier search did not score. Scores measured with anything
else are refused in one line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ovo.errors import ConfigError
from ovo.search.result import EvaluatedArch
from ovo.search.state import STATE_FORMAT

STATE_NAME = "search_state.json"
# what scored_with holds, and what a difference in each key means
_SAME = {
    "weights": "checkpoint weights",
    "split": "fitness split",
    "split_indices": "fitness split",
    "split_images": "fitness split",
    "max_batches": "fitness split (eval.max_batches)",
}


def weights_fingerprint(state_dict: Mapping[str, Any]) -> str:
    """A short hash of a model's tensors (names, dtypes, shapes and values): the same for a
    checkpoint copied or moved, another for any other weights."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def indices_fingerprint(indices: Iterable[int]) -> str:
    """A short hash of a split's image indices."""
    text = ",".join(str(int(i)) for i in indices)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WarmSource:
    """An earlier search's complete scores and what they were measured with."""

    directory: Path
    entries: tuple[EvaluatedArch, ...]
    scored_with: dict[str, Any] | None

    def check(self, scored_with: Mapping[str, Any], keys: Iterable[str] | None = None) -> None:
        """Refuse (one :class:`ConfigError`) scores measured with other weights or another split
        than ``scored_with`` (only ``keys`` of it, e.g. before the data is loaded)."""
        where = f"warm_start={self.directory}"
        if self.scored_with is None:
            raise ConfigError(
                f"{where} was written by an ovo that did not record which checkpoint and split "
                "scored it, so its scores cannot be trusted here; search without warm_start"
            )
        for key in keys if keys is not None else _SAME:
            there, here = self.scored_with.get(key), scored_with.get(key)
            if there != here:
                raise ConfigError(
                    f"{where} scored its archs with another {_SAME[key]} ({key}: {there} there, "
                    f"{here} here); warm-start only from a search of this checkpoint on the same "
                    "split, or drop warm_start"
                )

    def describe(self) -> dict[str, Any]:
        """What ``results.json`` says about the warm start."""
        return {"directory": str(self.directory), "entries": len(self.entries)}


def read_warm_source(path: str | Path, own: str | Path | None = None) -> WarmSource:
    """The search in run directory ``path`` (its ``search_state.json``); ``own`` is this
    search's run directory, which cannot lend to itself."""
    directory = Path(path)
    where = f"warm_start={path}"
    if own is not None and directory.resolve() == Path(own).resolve():
        raise ConfigError(
            f"{where} is this search's own run directory; a search resumes there by itself: "
            "drop warm_start, or give another name=..."
        )
    state_file = directory / STATE_NAME
    if not state_file.is_file():
        raise ConfigError(
            f"{where} holds no search (no {STATE_NAME}); give the run directory of an earlier "
            "python -m ovo.search"
        )
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError("not an ovo search state")
        entries = tuple(
            e
            for e in (EvaluatedArch.from_dict(d) for d in state.get("evaluated", []))
            if e.complete
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{where}: {state_file} cannot be read as a search state ({err})"
        ) from None
    return WarmSource(directory, entries, state.get("scored_with"))
