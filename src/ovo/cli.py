"""Shared plumbing of the entry points: one-line user errors, config conversion, Hydra paths."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from ovo.errors import UserError

log = logging.getLogger("ovo")
F = TypeVar("F", bound=Callable[..., Any])


def debug_mode() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("OVO_DEBUG") == "1"


def user_errors_exit(fn: F) -> F:
    """Turn a :class:`UserError` into one line on stderr and exit status 2 (traceback only with
    ``HYDRA_FULL_ERROR=1`` or ``OVO_DEBUG=1``); other exceptions propagate as bugs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            if debug_mode():
                raise
            print(f"ovo: error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def to_plain(cfg: DictConfig | Any) -> Any:
    """A resolved plain-Python copy of a config node (safe to store in checkpoints)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg
