"""The shape every command shares.

A command is one module of :mod:`ovo.commands` with a ``run(cfg) -> dict`` and a
``main = hydra_command("<config>", run)``; ``python -m ovo.<command>`` calls that ``main``.
``run`` always goes the same way: the config is composed (Hydra, ``conf/<config>.yaml``) and
resolved, the command builds what it needs (from a checkpoint for search/evaluate/export/rank),
runs, writes its outputs atomically (:mod:`ovo.atomic`) and prints where they are
(:func:`print_outputs`).

A mistake the user can fix ends in one ``ovo: error: ...`` line and exit status 2; anything
else is a bug and keeps its traceback (exit 1). ``OVO_DEBUG=1`` shows the traceback of a user
error too.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from ovo.errors import ConfigError, UserError
from ovo.paths import conf_dir

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


def open_overrides(config_name: str, overrides: Sequence[str]) -> list[str]:
    """``overrides`` with ``section.key=value`` turned into ``++section.key=value`` for the open
    sections of ``config_name`` (see ``OPEN_SECTIONS``)."""
    sections = OPEN_SECTIONS.get(config_name, ())
    out = []
    for arg in overrides:
        head = arg.split("=", 1)[0]
        if "=" in arg and any(head.startswith(f"{s}.") for s in sections):
            arg = f"++{arg}"
        out.append(arg)
    return out


_PLAIN = re.compile(r"[\w./:~+-]+")  # Hydra override values that need no quoting


def hydra_value(value: object) -> str:
    """``value`` as a Hydra override value: paths with spaces or commas get quoted."""
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    # Hydra keeps backslashes literal except those before a quote or the closing quote
    escaped = re.sub(r"(\\*)('|$)", lambda m: 2 * m[1] + ("\\'" if m[2] else ""), text)
    return f"'{escaped}'"


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


def one_line(err: BaseException) -> str:
    """The message without a worker's embedded traceback (DataLoader workers re-raise the
    original exception type with 'Caught X in DataLoader worker ... Original Traceback ...')."""
    text = str(err).strip()
    if "Traceback" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        last = lines[-1]
        text = last.split(": ", 1)[1] if last.startswith(type(err).__name__ + ":") else last
    return " ".join(text.split())


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


def hydra_command(config_name: str, run: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """The ``main()`` of a command: Hydra composes ``conf/<config_name>.yaml`` with the
    command line (open sections rewritten), the config is resolved, then ``run(cfg)``."""
    import hydra

    @hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")
    @user_errors_exit
    def hydra_main(cfg: DictConfig) -> Any:
        OmegaConf.resolve(cfg)
        return run(cfg)

    @functools.wraps(run)
    def main() -> Any:
        # rewritten in sys.argv itself: DDP launchers re-run it for the other ranks
        sys.argv[1:] = open_overrides(config_name, sys.argv[1:])
        return hydra_main()

    return main


def output_dir() -> Path:
    """This Hydra run's output directory."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


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


LOCK_NAME = ".ovo.lock"


@contextlib.contextmanager
def run_dir_lock(directory: str | Path, command: str) -> Iterator[None]:
    """Hold ``directory/.ovo.lock`` while the block runs, so that a second ``command`` into the
    same run directory refuses with one line instead of writing the same files.

    The lock is an ``fcntl.flock``, which the OS drops when its process dies: a crashed or
    ``kill -9``-ed run leaves at most a stale file, which does not block. The file is removed
    on the way out (nothing is left behind by a run that refuses or fails). On a filesystem
    without ``flock`` the run goes on unlocked.
    """
    directory = Path(directory)
    path = directory / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"{directory} is in use by another {command} run (pid {holder}); wait for it to "
                "finish, or give this one its own directory (name=... or hydra.run.dir=...)"
            ) from None
        except OSError:  # no flock here (some network filesystems): run unlocked
            os.close(fd)
            yield
            return
        try:  # a run that just finished may have removed the file we opened: lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding the lock: see the inode check above
        os.close(fd)


def open_checkpoint(cfg: DictConfig) -> Any:
    """The trained supernet a checkpoint command names (``ckpt_path``); a ``space`` key, where
    the command has one, asserts the checkpoint's space."""
    from ovo.checkpoint import load_supernet
    from ovo.settings import plain
    from ovo.space import SearchSpace

    expected = SearchSpace.from_dict(plain(cfg.space)) if cfg.get("space") else None
    return load_supernet(cfg.ckpt_path, expected_space=expected)


def eval_fabric(cfg: DictConfig) -> Any:
    """The launched Fabric of a command's ``eval`` block."""
    from ovo.evaluation import EvalSettings, make_fabric

    return make_fabric(EvalSettings.from_dict(cfg.get("eval")))


def compile_settings(cfg: DictConfig) -> tuple[str, Any]:
    """``compile`` and ``compile_options`` of a command, checked (before any work)."""
    from ovo.settings import CompileOptions, check_compile_mode

    mode = check_compile_mode(cfg.get("compile", "none"))
    return mode, CompileOptions.from_dict(cfg.get("compile_options"))


def compile_for_eval(net: Any, cfg: DictConfig, fabric: Any, batch_size: int) -> Any:
    """With ``compile=blocks``: the net's blocks compiled once per block shape (warmed up for
    evaluation under the Fabric's autocast if asked); ``None`` otherwise."""
    mode, opts = compile_settings(cfg)
    if mode == "none":
        return None
    compiled = net.compile_blocks(opts.backend, opts.mode)
    if opts.warmup:
        compiled.warm_up(net, batch_size, False, fabric.global_rank == 0, fabric.autocast)
    return compiled


def compile_line(compiled: Any) -> list[str]:
    """The summary line of a compiled run (none when not compiled)."""
    if compiled is None:
        return []
    warm = compiled.warmup_seconds
    return [
        f"compiled blocks: {compiled.graphs} graphs for {len(compiled.shapes)} block shapes"
        + (f", warm-up {warm:.1f}s" if warm is not None else "")
    ]


def open_wandb(cfg: DictConfig, out: Path, job_type: str) -> Any:
    """A W&B run for a checkpoint command (``cfg.wandb``: project, offline), logged under
    ``out``, named ``<job_type>-<cfg.name>``; ``None`` when ``cfg.wandb.enabled`` is false."""
    if not cfg.wandb.enabled:
        return None
    import wandb

    from ovo.settings import plain

    return wandb.init(
        project=cfg.wandb.project,
        dir=str(out),
        job_type=job_type,
        name=f"{job_type}-{cfg.name}",
        config=plain(cfg),
        mode="offline" if cfg.wandb.offline else "online",
        reinit="finish_previous",  # e.g. a search in the same process as training
    )


def print_outputs(title: str, outputs: Mapping[str, Any], lines: Sequence[str] = ()) -> None:
    """The closing summary every command prints: a title, a few lines, then where things are."""
    width = max((len(k) for k in outputs), default=0) + 2
    text = ["", title, *(f"  {line}" for line in lines)]
    text += [f"  {f'{name}:':{width}s}{path}" for name, path in outputs.items()]
    print("\n".join(text), flush=True)
