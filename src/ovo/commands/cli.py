"""The shape every command shares.

A command is one module of :mod:`ovo.commands` with a ``run(cfg) -> dict`` and a
``main = hydra_command("<config>", run)``; ``python -m ovo.<command>`` calls that ``main``.
``run`` always goes the same way: the config is composed (Hydra, ``conf/<config>.yaml``) and
resolved, the command builds what it needs (from a checkpoint for search/evaluate/export/rank),
runs, writes its outputs atomically (:mod:`ovo.atomic`) and prints where they are
(:func:`print_outputs`).

The helpers of the commands that start from a trained supernet are in
:mod:`ovo.commands.from_checkpoint`; the run directory's lock and disk checks in
:mod:`ovo.commands.rundir`.

A mistake the user can fix ends in one ``ovo: error: ...`` line and exit status 2; anything
else is a bug and keeps its traceback (exit 1). ``OVO_DEBUG=1`` shows the traceback of a user
error too.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from ovo.errors import UserError, one_line
from ovo.jobs import hydra_value
from ovo.paths import conf_dir

__all__ = [
    "debug_mode",
    "find_user_error",
    "hydra_command",
    "hydra_value",
    "one_line",
    "open_overrides",
    "output_dir",
    "print_outputs",
    "user_errors_exit",
]

F = TypeVar("F", bound=Callable[..., Any])

# Config sections whose keys come from the checkpoint, so Hydra's struct mode cannot know them:
# `data.root=/x` is rewritten to `++data.root=/x` (add or override) for these commands, so they
# take the spelling training takes.
OPEN_SECTIONS: dict[str, tuple[str, ...]] = {
    "search": ("data",),
    "evaluate": ("data",),
    "export": ("data",),
    "rank": ("data",),
}


# A section's main key given as the section itself: `family=DIR` is `family.dir=DIR`
SHORTHANDS: dict[str, dict[str, str]] = {"export": {"family": "family.dir"}}


def open_overrides(config_name: str, overrides: Sequence[str]) -> list[str]:
    """``overrides`` with ``section.key=value`` turned into ``++section.key=value`` for the open
    sections of ``config_name`` (see ``OPEN_SECTIONS``), and a section's shorthand
    (``SHORTHANDS``: ``family=DIR``) spelled out."""
    sections = OPEN_SECTIONS.get(config_name, ())
    shorthands = SHORTHANDS.get(config_name, {})
    out = []
    for arg in overrides:
        head = arg.split("=", 1)[0]
        if head in shorthands and "=" in arg and not arg.split("=", 1)[1].startswith("{"):
            arg = f"{shorthands[head]}={arg.split('=', 1)[1]}"
            head = arg.split("=", 1)[0]
        if "=" in arg and any(head.startswith(f"{s}.") for s in sections):
            arg = f"++{arg}"
        out.append(arg)
    return out


def debug_mode() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("OVO_DEBUG") == "1"


def find_user_error(err: BaseException | None) -> UserError | None:
    """The :class:`UserError` behind ``err``: itself, or the cause of a wrapper such as Hydra's
    ``InstantiationException`` or a DataLoader worker's re-raise."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def user_errors_exit(fn: F) -> F:
    """Turn a :class:`UserError` into one line on stderr and exit status 2 (the traceback only in
    :func:`debug_mode`); other exceptions propagate as bugs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            user_error = find_user_error(err)
            if user_error is None or debug_mode():
                raise
            print(f"ovo: error: {one_line(user_error)}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def config_groups(config_name: str, conf: Path | None = None) -> dict[str, list[str]]:
    """The config groups ``conf/<config_name>.yaml`` composes (its defaults list, Hydra's own
    ``hydra/...`` groups aside), each with the options ``conf/`` holds."""
    conf = conf or conf_dir()
    try:
        defaults = yaml.safe_load((conf / f"{config_name}.yaml").read_text()).get("defaults", [])
    except (OSError, AttributeError, yaml.YAMLError):
        return {}
    groups = {}
    for entry in defaults:
        if not isinstance(entry, dict):
            continue
        for key in entry:
            group = str(key).removeprefix("override ").removeprefix("optional ").strip()
            folder = conf / group
            if group.startswith("hydra") or "@" in group or not folder.is_dir():
                continue
            groups[group] = sorted(str(p.relative_to(folder))[:-5] for p in folder.rglob("*.yaml"))
    return groups


def unknown_option(config_name: str, overrides: Sequence[str]) -> str | None:
    """The message for the first ``group=option`` of ``overrides`` whose option the group does
    not have (``experiment=ovo_tii``), or ``None``. Hydra itself would answer with a listing of
    its search path and exit 1; the command says it in one line instead. Overrides Hydra cannot
    parse, glob sweeps and extra config directories are left to Hydra."""
    args = [a for a in overrides if "=" in a and not a.startswith("-")]
    if any(a.startswith(("--config-dir", "-cd", "hydra.searchpath")) for a in overrides):
        return None  # options may come from another config directory
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except HydraException:
        return None
    groups = config_groups(config_name)
    for o in parsed:
        choices = groups.get(o.key_or_group)
        if choices is None or o.is_delete() or o.value_type == ValueType.GLOB_CHOICE_SWEEP:
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        for value in values:
            if value is not None and str(value) != "null" and str(value) not in choices:
                group = o.key_or_group
                return (
                    f"{group}={value} is not an option of the config group '{group}'; "
                    f"choose one of: {', '.join(choices)}"
                )
    return None


def hydra_command(config_name: str, run: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """The ``main()`` of a command: Hydra composes ``conf/<config_name>.yaml`` with the
    command line (open sections rewritten), the config is resolved, then ``run(cfg)``."""

    @hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")
    @user_errors_exit
    def hydra_main(cfg: DictConfig) -> Any:
        OmegaConf.resolve(cfg)
        return run(cfg)

    @functools.wraps(run)
    def main() -> Any:
        # rewritten in sys.argv itself: DDP launchers re-run it for the other ranks
        sys.argv[1:] = open_overrides(config_name, sys.argv[1:])
        problem = None if debug_mode() else unknown_option(config_name, sys.argv[1:])
        if problem:  # before Hydra makes the run directory: nothing is written
            print(f"ovo: error: {problem}", file=sys.stderr, flush=True)
            sys.exit(2)
        return hydra_main()

    return main


def output_dir() -> Path:
    """This Hydra run's output directory."""
    return Path(HydraConfig.get().runtime.output_dir)


def print_outputs(title: str, outputs: Mapping[str, Any], lines: Sequence[str] = ()) -> None:
    """The closing summary every command prints: a title, a few lines, then where things are."""
    width = max((len(k) for k in outputs), default=0) + 2
    text = ["", title, *(f"  {line}" for line in lines)]
    text += [f"  {f'{name}:':{width}s}{path}" for name, path in outputs.items()]
    print("\n".join(text), flush=True)
