"""Shared plumbing of the entry points: one-line user errors, config conversion, Hydra paths."""

from __future__ import annotations

import functools
import os
import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from ovo.errors import CheckpointError, ConfigError, UserError
from ovo.space import Arch, SearchSpace

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
        except Exception as err:
            user_error = find_user_error(err)
            if user_error is None or debug_mode():
                raise
            print(f"ovo: error: {one_line(user_error)}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def find_user_error(err: BaseException) -> UserError | None:
    """The :class:`UserError` behind ``err``: itself, or the cause of a wrapper such as Hydra's
    ``InstantiationException`` or a DataLoader worker's re-raise."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def one_line(err: BaseException) -> str:
    """The message without a worker's embedded traceback (DataLoader workers re-raise the
    original exception type with 'Caught X in DataLoader worker ... Original Traceback ...')."""
    text = str(err).strip()
    if "Traceback" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        last = lines[-1]
        text = last.split(": ", 1)[1] if last.startswith(type(err).__name__ + ":") else last
    return " ".join(text.split())


def to_plain(cfg: DictConfig | Any) -> Any:
    """A resolved plain-Python copy of a config node (safe to store in checkpoints)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def parse_arch_spec(spec: Any, space: SearchSpace, seed: int = 0) -> dict[str, Arch]:
    """Named archs from a spec: ``min``, ``max``, ``random:N`` (seeded), a YAML/JSON file, an
    inline mapping, or a list of those. Every arch is validated against ``space``."""
    if OmegaConf.is_config(spec):
        spec = OmegaConf.to_container(spec, resolve=True)
    if isinstance(spec, list | tuple):
        out: dict[str, Arch] = {}
        for item in spec:
            out.update(parse_arch_spec(item, space, seed))
        return out
    if isinstance(spec, dict):
        return {"custom": space.validate(Arch.from_dict(spec))}
    text = str(spec)
    if text in ("min", "max"):
        return {text: space.min_arch if text == "min" else space.max_arch}
    if text.startswith("random:"):
        try:
            n = int(text.split(":", 1)[1])
        except ValueError as err:
            raise ConfigError(f"arch={text}: use random:N with an integer N") from err
        rng = random.Random(f"ovo-eval/{seed}")
        return {f"random{i:03d}": space.sample(rng) for i in range(n)}
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"arch={text}: not min, max, random:N or an existing YAML/JSON file")
    return {path.stem: space.validate(Arch.from_yaml(path))}


def datamodule_from_checkpoint(hparams: dict[str, Any], overrides: Any = None) -> Any:
    """The data module the checkpoint was trained with (same held-out search split), with
    ``overrides`` (e.g. a new ``root``) merged in."""
    from hydra.utils import instantiate

    data = hparams.get("data")
    if not data:
        raise CheckpointError(
            "the checkpoint records no data config; it predates ovo's data "
            "recording: pass the full data config as data=..."
        )
    merged = OmegaConf.merge(OmegaConf.create(data), OmegaConf.create(to_plain(overrides) or {}))
    return instantiate(merged, _convert_="all")


def check_writable(directory: str | Path, need_bytes: int = 0) -> None:
    """Fail before any work if ``directory`` cannot be written or lacks ``need_bytes`` free."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".ovo-write-test-{os.getpid()}"
        probe.write_bytes(b"ovo")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"output directory {directory} is not writable ({err.strerror or err}); "
            "point hydra.run.dir or OVO_LOG_DIR to a writable place"
        ) from err
    free = shutil.disk_usage(directory).free
    if free < need_bytes:
        raise ConfigError(
            f"only {free / 2**30:.2f} GiB free under {directory} but this run's "
            f"checkpoints need about {need_bytes / 2**30:.2f} GiB; free space or "
            "move the outputs (hydra.run.dir=..., OVO_LOG_DIR=...)"
        )


def output_dir() -> Path:
    """This Hydra run's output directory."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
