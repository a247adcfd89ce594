"""Search state on disk: format, RNG state (de)serialisation, settings checks."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ovo.atomic import atomic_write_json
from ovo.errors import ConfigError

STATE_FORMAT = "ovo.search.state"
# 2: settings say how fitness is scored ("fitness"), evaluations how many images they took and
# whether that was the whole split. 1 (before successive halving) is read and upgraded.
STATE_VERSION = 2


def save_state(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write a state atomically: the file always holds the previous or the new whole state."""
    atomic_write_json(path, state)


def rng_state_to_json(rng: random.Random) -> list[Any]:
    """``Random.getstate()`` (nested tuples of ints) as JSON lists."""
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def rng_from_json(data: list[Any]) -> random.Random:
    version, internal, gauss_next = data
    rng = random.Random()
    rng.setstate((int(version), tuple(int(x) for x in internal), gauss_next))
    return rng


def canonical(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples become lists...), for comparisons."""
    return json.loads(json.dumps(data, sort_keys=True))


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short hash of the settings that decide a search's trajectory."""
    text = json.dumps(canonical(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    # A different strategy explains every other difference: name it first.
    for key in sorted(set(old) | set(new), key=lambda k: (k != "strategy", k)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return diffs


def upgrade_state_v1(state: dict[str, Any]) -> dict[str, Any]:
    """A version-1 state as version 2: its search scored every arch on the whole split and had
    no latency budget."""
    state = dict(state)
    settings = dict(state.get("settings", {}))
    settings["fitness"] = {"mode": "full"}
    # version 1 had no latency budget
    latency = {"latency_ms_max": None, "latency_table": None, "latency_device": None}
    settings["constraints"] = {**settings.get("constraints", {}), **latency}
    state["settings"] = settings
    state["fingerprint"] = fingerprint(canonical(state["settings"]))
    state["version"] = STATE_VERSION
    return state


def load_state(path: str | Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Read a state file and check it was written by a search with the same ``settings``."""
    path = Path(path)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"search state {path} cannot be read ({err}); delete it to start over"
        ) from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path} is not an ovo search state file; pass another state path")
    version = state.get("version")
    if version == 1:
        state = upgrade_state_v1(state)
    elif version != STATE_VERSION:
        raise ConfigError(
            f"search state {path} has format version {version}, this ovo reads versions 1 to "
            f"{STATE_VERSION} (a newer ovo wrote it?); use that ovo, or delete the file to start "
            "over"
        )
    current = canonical(settings)
    if state.get("fingerprint") != fingerprint(current) or state.get("settings") != current:
        diffs = _differences(state.get("settings") or {}, current)
        shown = "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
        shown = shown or "fingerprint mismatch"
        raise ConfigError(
            f"search state {path} was written by a search with other settings ({shown}); "
            "resume with the same settings, or delete the file / use another state path"
        )
    return state
