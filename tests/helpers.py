"""Config composition and small runners shared by the tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ovo.paths import conf_dir

REPO = Path(__file__).resolve().parents[1]


def load_bench_script(filename: str, name: str, folder: str = "bench"):
    """``<folder>/<filename>`` (a benchmark, or a study driver with ``folder="studies"``)
    imported as module ``name`` (registered in ``sys.modules`` first: the scripts' dataclasses
    look their module up)."""
    spec = importlib.util.spec_from_file_location(name, REPO / folder / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# A supernet step that takes milliseconds: nano space, 32px fake data, patch 8.
FAST = [
    "data=fake",
    "space=nano",
    "trainer=cpu",
    "logger=csv",
    "model.patch_size=8",
    "data.num_train=128",
    "data.num_val=64",
    "data.batch_size=16",
    "data.search_per_class=4",
    "panel.num_random=2",
    "scheduler.warmup_epochs=1",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "mixup.mixup_alpha=0.0",
    "mixup.cutmix_alpha=0.0",
    "+trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


def compose_cfg(name: str, overrides: list[str], out_dir: Path) -> DictConfig:
    """Compose ``conf/<name>.yaml`` as the CLI would, writing into ``out_dir``."""
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.log_dir = str(out_dir)
        del cfg["hydra"]  # as in a real run: the task sees its config, HydraConfig the rest
    return cfg


def run_cli(
    module: str, args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in a fresh process, as a user would run it."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _rebind_log_streams() -> None:
    """Point logging handlers left on a closed stream (an earlier test's captured stderr: e.g.
    Lightning's own handler is made at first use) at the current ``sys.stderr``."""
    import logging

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for lg in loggers:
        for handler in getattr(lg, "handlers", []):
            stream = getattr(handler, "stream", None)
            if type(handler) is logging.StreamHandler and getattr(stream, "closed", False):
                handler.stream = sys.stderr  # not setStream: it flushes the closed stream


def run_module(module: str, args: list[str]) -> int:
    """``python -m <module> <args>`` in this process (``runpy``, as the interpreter runs it);
    returns the exit status. Independent of where the command's code lives."""
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    _rebind_log_streams()
    saved, debug = sys.argv, os.environ.pop("HYDRA_FULL_ERROR", None)
    sys.argv = [module, *args]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved
        if debug is not None:
            os.environ["HYDRA_FULL_ERROR"] = debug
        GlobalHydra.instance().clear()
    return code


def run_main(main, args: list[str], capsys) -> tuple[int, str, str]:
    """Call a Hydra entry point (``ovo.train.main`` ...) in-process as the CLI would, and
    return (exit status, stdout, stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    saved = sys.argv
    sys.argv = ["ovo", *args]
    os.environ.pop("HYDRA_FULL_ERROR", None)
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved
        os.environ["HYDRA_FULL_ERROR"] = "1"
        GlobalHydra.instance().clear()
    out, err = capsys.readouterr()
    return code, out, err


def flat_keys(node: dict, prefix: str = "") -> dict:
    """A nested mapping as ``{"a.b.c": value}`` (an empty mapping stays one value)."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
