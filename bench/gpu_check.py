"""Check ovo on a GPU machine with no network: one command, stages, one output folder.

Here (a machine with PyPI):   make gpu-wheels                      # wheels the GPU box lacks
                              make gpu-check ARGS="--pack --stages all"  # size of what must travel
There (the GPU machine):      make gpu-check [ARGS="--stages env tests bench"]
                              (or: python3 bench/gpu_check.py ..., no make or venv needed)

Stages (minutes on one H100; each runs in a child process under its own time limit, all output
under one folder, a summary table at the end):

  env     ~0.5  torch/CUDA versions and the GPU; installs the carried wheels
                (.gpu-carry/wheels) into a private folder when hydra/omegaconf/pytest are missing
  tests   ~4    the test suite's CUDA cases (pytest -m cuda)
  bench   ~7    the bench's GPU rows (bench/run.py --device cuda: speed, compile, ddp, memory)
  train   ~3    experiment=repro_cifar10_gpu for a short schedule on the real CIFAR-10 images
                (.gpu-carry/data/cifar10_jpg.zip), then its validation panel

`core` = env tests bench (about 12 minutes); `all` adds train. `--smoke` runs every stage at toy
sizes on the CPU, side by side (the default test suite runs it) to keep this script honest without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".gpu-carry"  # git-ignored: wheels/ and data/ travel with the working tree
WHEELS, DATA = CARRY / "wheels", CARRY / "data"
TRAVEL_LIMIT_MIB = 64.0  # the device tool's cap on what travels
SITE = Path("/tmp/ovo-gpu-site")  # where carried wheels are installed on the GPU machine
# imports the GPU image may lack (../shared/NOTES.md) -> the carried wheels that provide them
NEEDED = {
    "hydra": ("hydra_core", "omegaconf", "antlr4_python3_runtime"),
    "omegaconf": ("omegaconf", "antlr4_python3_runtime"),
    "pytest": ("pytest", "iniconfig", "pluggy"),
}


@dataclass(frozen=True)
class Stage:
    name: str
    minutes: float
    limit_s: int  # each stage must end within this (a device call runs 10 minutes at most)
    needs_data: bool = False


STAGES = {
    s.name: s
    for s in (
        Stage("env", 0.5, 120),
        Stage("tests", 4.0, 540),
        Stage("bench", 7.0, 570),
        Stage("train", 3.0, 540, needs_data=True),
    )
}
GROUPS = {"core": ["env", "tests", "bench"], "all": list(STAGES)}


def fail(message: str) -> None:
    print(f"ovo: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def stage_list(names: list[str]) -> list[Stage]:
    out: list[str] = []
    for name in names:
        for n in GROUPS.get(name, [name]):
            if n not in STAGES:
                fail(f"unknown stage {n!r}: use {', '.join([*STAGES, *GROUPS])}")
            if n not in out:
                out.append(n)
    return [STAGES[n] for n in out]


# ---- here: what has to travel --------------------------------------------------------------


def tree_bytes() -> int:
    """Bytes of the working tree that travels: tracked and untracked-but-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum(
        (REPO / p.decode()).stat().st_size for p in listed if p and (REPO / p.decode()).is_file()
    )


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def pack(stages: list[Stage]) -> dict:
    """Print (and check against the cap) what a device call running ``stages`` must carry."""
    carry = [WHEELS] + ([DATA] if any(s.needs_data for s in stages) else [])
    sizes = {"working tree": tree_bytes()} | {
        str(c.relative_to(REPO)): folder_bytes(c) for c in carry
    }
    total = sum(sizes.values()) / 2**20
    for name, size in sizes.items():
        print(f"  {name:24s} {size / 2**20:7.1f} MiB")
    print(f"  {'total':24s} {total:7.1f} MiB (limit {TRAVEL_LIMIT_MIB:.0f} MiB)")
    if any(s.needs_data for s in stages) and not (DATA / "cifar10_jpg.zip").is_file():
        fail(
            f"{DATA / 'cifar10_jpg.zip'} is missing: copy ../shared/data/cifar10/cifar10_jpg.zip there"
        )
    if total > TRAVEL_LIMIT_MIB:
        fail(
            f"{total:.1f} MiB would travel, over the {TRAVEL_LIMIT_MIB:.0f} MiB limit: run the "
            "train stage in its own call (--stages env train) or remove untracked files"
        )
    names = " ".join(s.name for s in stages)
    print(f"carry: {[str(c.relative_to(REPO)) for c in carry]}")
    print(f"command there: python3 bench/gpu_check.py --stages {names}")
    return {"mib": total, "carry": [str(c) for c in carry]}


# ---- there: the stages ---------------------------------------------------------------------


def child_env(smoke: bool) -> dict[str, str]:
    paths = [str(REPO / "src"), str(SITE)] + [os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env |= {"WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    if smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""  # toy sizes on the CPU, even on a GPU machine
    return env


def run_child(
    cmd: list[str], log: Path, limit_s: int, env: dict[str, str], stream: bool = True
) -> int:
    """Run ``cmd`` with its output in ``log`` (and on this terminal when ``stream``); killed
    after ``limit_s`` seconds (exit 124), output or not."""
    start = time.monotonic()
    with log.open("w") as f:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        watchdog = threading.Timer(limit_s, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if stream:
                    sys.stdout.write(line)
                f.write(line)
            rc = proc.wait()
        finally:
            watchdog.cancel()
        if rc != 0 and time.monotonic() - start >= limit_s:
            f.write(f"\n[gpu-check] stage killed after {limit_s} s\n")
            return 124
        return rc


def stage_env(out: Path, smoke: bool) -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    missing = [m for m in NEEDED if _missing(m)]
    if missing and not smoke:
        dists = {d for m in missing for d in NEEDED[m]}
        wheels = sorted(w for w in WHEELS.glob("*.whl") if w.name.split("-")[0].lower() in dists)
        if not wheels:
            fail(
                f"{', '.join(missing)} missing and no wheels in {WHEELS}: run `make gpu-wheels` here first"
            )
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
        ]
        subprocess.run([*cmd, "--upgrade", "--target", str(SITE), *map(str, wheels)], check=True)
        info["installed"] = [w.name for w in wheels]
    info["missing_before"] = missing
    print(
        f"[gpu-check] python {info['python']}, torch {info['torch']}, CUDA {info['cuda']}, "
        f"GPU {info['gpu'] or 'none'}"
    )
    if not smoke and info["gpu"] is None:
        fail("no CUDA device is visible: run this on the GPU machine (or pass --smoke)")
    return info


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None and not (SITE / module).is_dir()


def stage_command(stage: Stage, out: Path, smoke: bool) -> list[str]:
    py = sys.executable
    if stage.name == "tests":
        if smoke:  # only that the CUDA cases exist and are collected
            return [
                py,
                "-m",
                "pytest",
                "-q",
                "--collect-only",
                "-m",
                "cuda",
                "-p",
                "no:cacheprovider",
                "tests/test_devices.py",
            ]
        return [py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-rs", "tests"]
    if stage.name == "bench":
        args = [py, "bench/run.py", "--out", str(out / "bench.json")]
        if smoke:  # the entry point and the package import; its rows run in test_bench.py
            return [py, "bench/run.py", "--help"]
        return [*args, "--device", "cuda", "--measures", "speed", "compile", "ddp", "memory"]
    if stage.name == "train":
        train = [py, "-m", "ovo.train", f"hydra.run.dir={out / 'train'}", "logger=csv"]
        if smoke:
            return [
                *train,
                "experiment=quickstart",
                "trainer.max_epochs=1",
                "data.num_workers=0",
                "callbacks=none",
                "+trainer.limit_train_batches=2",
                "+trainer.limit_val_batches=1",
            ]
        return [
            *train,
            "experiment=repro_cifar10_gpu",
            "trainer.max_epochs=5",
            "trainer.check_val_every_n_epoch=5",
            "data.num_workers=8",
        ]
    raise AssertionError(stage.name)


def prepare_data(smoke: bool) -> None:
    """Unzip the carried CIFAR-10 copy where the imagefolder preset reads it."""
    if smoke:
        return
    target = Path(os.environ.setdefault("OVO_DATA_DIR", "/tmp/ovo-data")) / "cifar10"
    if not (target / "train").is_dir():
        zip_path = DATA / "cifar10_jpg.zip"
        if not zip_path.is_file():
            fail(f"{zip_path} is missing: carry .gpu-carry/data (see --pack)")
        print(f"[gpu-check] unzipping {zip_path} into {target}")
        shutil.unpack_archive(zip_path, target)


def panel_lines(out: Path) -> list[str]:
    """The short training's validation panel, one line per subnet (so a broken GPU training
    shows as a number)."""
    panel = out / "train" / "panel.json"
    if not panel.is_file():
        return ["no panel.json was written"]
    return [
        f"{name:>10s}  {metrics}"
        for name, metrics in json.loads(panel.read_text())["panel"].items()
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stages", nargs="+", default=["core"], help="stages or groups (core, all)"
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default outputs/gpu_check/<time>)"
    )
    parser.add_argument(
        "--pack", action="store_true", help="here: print and check what must travel"
    )
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    args = parser.parse_args(argv)
    stages = stage_list(args.stages)
    if args.pack:
        return pack(stages)
    out = Path(args.out or REPO / "outputs" / "gpu_check" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    out.mkdir(parents=True, exist_ok=True)
    env = child_env(args.smoke)
    summary: dict = {"stages": {}, "out": str(out)}

    def run_stage(stage: Stage, stream: bool) -> None:
        start = time.monotonic()
        print(
            f"\n[gpu-check] stage {stage.name} (about {stage.minutes} min, limit {stage.limit_s} s)",
            flush=True,
        )
        if stage.name == "env":
            summary["env"] = stage_env(out, args.smoke)
            rc = 0
        else:
            if stage.needs_data:
                prepare_data(args.smoke)
            command = stage_command(stage, out, args.smoke)
            rc = run_child(command, out / f"{stage.name}.log", stage.limit_s, env, stream)
        summary["stages"][stage.name] = {"rc": rc, "seconds": round(time.monotonic() - start, 1)}
        if stage.name == "train" and rc == 0:
            summary["panel"] = panel_lines(out)

    if args.smoke:  # toy stages are independent: side by side (a GPU machine runs them in turn)
        for stage in (s for s in stages if s.name == "env"):
            run_stage(stage, True)
        rest = [s for s in stages if s.name != "env"]
        with ThreadPoolExecutor(max(1, len(rest))) as pool:
            list(pool.map(lambda s: run_stage(s, False), rest))
        summary["stages"] = {s.name: summary["stages"][s.name] for s in stages}
    else:
        for stage in stages:
            run_stage(stage, True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n[gpu-check] summary")
    for name, r in summary["stages"].items():
        state = (
            "ok" if r["rc"] == 0 else ("TIMEOUT" if r["rc"] == 124 else f"FAILED (exit {r['rc']})")
        )
        print(f"  {name:6s} {r['seconds']:7.1f} s  {state}  {out / (name + '.log')}")
    for line in summary.get("panel", []):
        print(f"  panel: {line}")
    print(f"  bench table: {out / 'bench.json'}\n  everything: {out}")
    if any(r["rc"] != 0 for r in summary["stages"].values()):
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
