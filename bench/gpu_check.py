"""Check ovo on a lent GPU machine with no network: one command, a time budget, a few files.

Here (a machine with PyPI):   make gpu-wheels           # wheels the GPU image lacks (carry them)
There (the GPU machine):      python3 bench/gpu_check.py --budget 480 --out "$OUT"
                              (or make gpu-check ARGS="--budget 480"; no make or venv needed)

The stages run in turn, most valuable first, each in a child process under a time limit: its
own budget, plus whatever earlier stages left unused beyond what the later stages reserve. A
stage whose limit would fall below its minimum is not started and is recorded as "not run" with
the reason; every stage's measured time is recorded. The output folder gets exactly four
files: gpu_check.log (every stage's output), summary.json, summary.md (each target as met /
not met / not run) and bench.json (the bench's rows). ``--smoke`` runs every stage and row at
toy sizes on the CPU (the default test suite runs it), so this script stays honest without a
GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".gpu-carry"  # git-ignored: wheels/ and data/ travel with the working tree
WHEELS, DATA = CARRY / "wheels", CARRY / "data"
TRAVEL_LIMIT_MIB = 64.0  # the device tool's cap on what travels
MAX_FILES = 6  # what the device tool brings back is capped (8); a margin for the caller's own
SITE = Path("/tmp/ovo-gpu-site")  # where carried wheels are installed on the GPU machine
# imports the GPU image may lack (../shared/NOTES.md) -> the carried wheels that provide them
NEEDED = {
    "hydra": ("hydra_core", "omegaconf", "antlr4_python3_runtime"),
    "omegaconf": ("omegaconf", "antlr4_python3_runtime"),
    "pytest": ("pytest", "iniconfig", "pluggy"),
}
# the CUDA test files run first (fast numeric checks before compile-heavy ones), then every
# other file (pytest keeps the order of file arguments, but a folder argument re-sorts them all)
FIRST_TESTS = ("tests/test_grads.py", "tests/test_devices.py", "tests/test_compile.py")


def test_files() -> list[str]:
    """FIRST_TESTS, then the suite's other test files (any may hold CUDA cases)."""
    rest = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py"))
    return [*FIRST_TESTS, *(f for f in rest if f not in FIRST_TESTS)]


@dataclass(frozen=True)
class Stage:
    name: str
    budget_s: int  # its share of the default budget (the core stages add up to DEFAULT_BUDGET)
    min_s: int  # not started with less than this left: it could not finish anything useful
    what: str
    # its limit in --smoke, where the stages run side by side: a guard against a hang, which
    # a shared 2-core machine under load must not reach (toy stages take ~10-40 s quiet)
    smoke_s: int = 240
    needs_data: bool = False


STAGES = {
    s.name: s
    for s in (
        Stage("env", 20, 5, "versions, the GPU; installs carried wheels for missing imports"),
        Stage(
            "bench",
            120,
            45,
            "224px, bf16, batch 128: supernet min/mid/max/AutoFormer-T fwd+bwd vs the static "
            "export (eager, MFU), OVO step vs two static steps, peak memory",
        ),
        Stage(
            "compile",
            180,
            60,
            "224px: compiled supernet step vs eager static (AutoFormer-T, mid), first-use "
            "compile, then the warm-up of every block shape",
        ),
        Stage(
            "anchor",
            80,
            30,
            "224px: timm vit_tiny_patch16_224 (pretrained=False) eager and compiled beside "
            "ovo's AutoFormer-T export and supernet",
        ),
        Stage("tests", 80, 20, "the suite's CUDA cases (pytest -m cuda), fast files first"),
        Stage(
            "train",
            240,
            150,
            "experiment=repro_cifar10_gpu, 5 epochs on the carried CIFAR-10, then its panel",
            needs_data=True,
        ),
    )
}
GROUPS = {"core": ["env", "bench", "compile", "anchor", "tests"], "all": list(STAGES)}
DEFAULT_BUDGET = 480  # 8 of a lent machine's ~15 minutes (its start and hand-back count too)
BENCH_STAGES = {"bench": ["fwd_bwd", "ovo_step", "memory"], "compile": ["compile"]}
BENCH_STAGES["anchor"] = ["anchor"]

# the targets the summary reads (measure, arch or None, stage, target); arch rows' settings
# start with "tiny-<arch> "
ARCHS = ("min", "mid", "max", "AutoFormer-T")
TIMM = "timm vit_tiny_patch16_224"


@dataclass(frozen=True)
class Check:
    label: str
    stage: str
    measure: str
    arch: str | None = None
    target: str = ""  # ">= x" / "<= x"; empty: reported only
    unit: str = ""
    note: Callable[[dict], str] | None = None


def _mfu_note(detail: dict) -> str:
    if "supernet_mfu" not in detail:
        return f"{detail['supernet_img_s']:.0f} vs {detail['static_img_s']:.0f} img/s"
    return (
        f"{detail['supernet_img_s']:.0f} vs {detail['static_img_s']:.0f} img/s, MFU "
        f"{detail['supernet_mfu']:.1%} vs {detail['static_mfu']:.1%}"
    )


def _anchor_note(detail: dict) -> str:
    note = f"{detail['tflop_s']:.3g} TFLOP/s, {detail['gmacs_per_img']:.3g} GMAC/img"
    return note + (f", MFU {detail['mfu']:.1%}" if "mfu" in detail else "")


CHECKS = (
    *(
        Check(
            f"eager fwd+bwd, supernet / static, tiny-{a}",
            "bench",
            "fwd+bwd img/s, supernet / static",
            a,
            ">= 0.95",
            note=_mfu_note,
        )
        for a in ARCHS
    ),
    *(
        Check(
            f"compiled supernet step / eager static, tiny-{a}",
            "compile",
            "compiled supernet fwd+bwd / eager static",
            a,
            ">= 1.20",
            note=lambda d: f"{d['compiled_img_s']:.0f} vs {d['static_img_s']:.0f} img/s",
        )
        for a in ("AutoFormer-T", "mid")
    ),
    Check(
        "OVO step / (static teacher + student step)",
        "bench",
        "OVO step time / (static teacher + student step)",
        target="<= 1.05",
    ),
    Check(
        "peak memory, OVO / static pair",
        "bench",
        "peak step memory, OVO / (static teacher + student)",
        target="<= 1.15",
    ),
    Check(
        "compile warm-up, every block shape",
        "compile",
        "compile warm-up, every block shape (fwd+bwd)",
        unit="s",
        note=lambda d: f"{d['block_shapes']} shapes; {d['first_use_s']:.1f} s of it on first use",
    ),
    *(
        Check(
            f"anchor fwd+bwd img/s, {label}",
            "anchor",
            f"anchor fwd+bwd img/s, {label}",
            unit="img/s",
            note=_anchor_note,
        )
        for label in (
            f"{TIMM}, eager",
            f"{TIMM}, compiled",
            "ovo AutoFormer-T export, eager",
            "ovo supernet AutoFormer-T, eager",
        )
    ),
    Check(
        f"anchor compile warm-up, {TIMM}",
        "anchor",
        f"anchor compile warm-up, {TIMM} (fwd+bwd)",
        unit="s",
    ),
    Check(
        "anchor TFLOP/s, supernet AutoFormer-T / timm eager",
        "anchor",
        "anchor TFLOP/s, ovo supernet AutoFormer-T / timm eager",
    ),
)


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


def stage_table() -> str:
    """The stage list with budgets (the --help epilog)."""
    lines = ["stages (seconds of the budget; minimum to start):"]
    for s in STAGES.values():
        lines.append(f"  {s.name:8s} {s.budget_s:4d} s (min {s.min_s:3d})  {s.what}")
    core = sum(STAGES[n].budget_s for n in GROUPS["core"])
    lines.append(
        f"\n`core` = {' '.join(GROUPS['core'])} ({core} s, the default); `all` adds train, "
        "which needs the carried CIFAR-10 and a call of its own (--stages env train)."
    )
    return "\n".join(lines)


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


def pack(stages: list[Stage], budget: int) -> dict:
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
    print(
        f'command there: python3 bench/gpu_check.py --stages {names} --budget {budget} --out "$OUT"'
    )
    return {"mib": total, "carry": [str(c) for c in carry]}


# ---- the budget ----------------------------------------------------------------------------


def stage_limit(share_s: float, left_s: float, later_shares_s: float) -> float:
    """A stage's time limit: its own share (as far as time is left), plus what is left beyond
    the shares the later stages reserve (earlier stages' unused time flows forward)."""
    return max(min(share_s, left_s), left_s - later_shares_s)


# ---- there: the stages ---------------------------------------------------------------------


class Log:
    """Everything the run prints: to this terminal and to one log file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: TextIO = path.open("w")
        self.lock = threading.Lock()  # smoke stages write side by side: whole lines each

    def write(self, text: str) -> None:
        with self.lock:
            sys.stdout.write(text)
            sys.stdout.flush()
            self.file.write(text)
            self.file.flush()

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def close(self) -> None:
        self.file.close()


def child_env(smoke: bool) -> dict[str, str]:
    paths = [str(REPO / "src"), str(SITE)] + [os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env |= {"WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    if smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""  # toy sizes on the CPU, even on a GPU machine
        # side by side: one thread each (OpenMP threads spinning against each other on a
        # small machine cost more than they give at toy sizes)
        env["OMP_NUM_THREADS"] = "1"
    return env


def run_child(
    cmd: list[str], log: Log, limit_s: float, env: dict[str, str], prefix: str = ""
) -> tuple[int, list[str]]:
    """Run ``cmd`` with its output in ``log`` (each line after ``prefix``); killed after
    ``limit_s`` seconds (exit 124), output or not. Returns the exit status and the lines."""
    lines: list[str] = []
    # a session of its own: a kill reaches what the stage started too (inductor's compile
    # workers, DDP processes), so nothing of it runs on into the next stage
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended just now
            pass

    watchdog = threading.Timer(limit_s, kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(prefix + line)
            lines.append(line.rstrip("\n"))
        rc = proc.wait()
    finally:
        watchdog.cancel()
        try:  # whatever the stage left running
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if killed.is_set():
        log.line(f"[gpu-check] stage killed at its limit, {limit_s:.0f} s")
        return 124, lines
    return rc, lines


def stage_env(log: Log, smoke: bool) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_mib": torch.cuda.get_device_properties(0).total_memory // 2**20 if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
    }
    missing = [m for m in NEEDED if _missing(m)]
    if missing and not smoke:
        dists = {d for m in missing for d in NEEDED[m]}
        wheels = sorted(w for w in WHEELS.glob("*.whl") if w.name.split("-")[0].lower() in dists)
        if not wheels:
            raise RuntimeError(
                f"{', '.join(missing)} missing and no wheels in {WHEELS}: run `make gpu-wheels` "
                "here first and carry .gpu-carry/wheels"
            )
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        subprocess.run(
            [*cmd, "--no-compile", "--upgrade", "--target", str(SITE), *map(str, wheels)],
            check=True,
        )
        info["installed"] = [w.name for w in wheels]
    info["missing_before"] = missing
    log.line(
        f"[gpu-check] python {info['python']}, torch {info['torch']}, CUDA {info['cuda']}, "
        f"GPU {info['gpu'] or 'none'}"
    )
    if not smoke and info["gpu"] is None:
        raise RuntimeError("no CUDA device is visible: run this on the GPU machine (or --smoke)")
    return info


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None and not (SITE / module).is_dir()


def stage_command(stage: Stage, work: Path, smoke: bool) -> list[str]:
    py = sys.executable
    if stage.name == "tests":
        pytest = [py, "-m", "pytest", "-m", "cuda", "-p", "no:cacheprovider"]
        if smoke:  # that the CUDA cases exist and are collected
            return [*pytest, "-q", "--collect-only", *FIRST_TESTS]
        return [*pytest, "-v", "-rs", *test_files()]
    if stage.name in BENCH_STAGES:
        bench = [py, "bench/run.py", "--out", str(work / f"{stage.name}.json"), "--measures"]
        bench += BENCH_STAGES[stage.name]
        # toy: 32px, batch 4, one repeat, compile without code generation
        if smoke:
            return [*bench, "--quick", "--device", "cpu"]
        return [*bench, "--device", "cuda", "--only", "224"]
    if stage.name == "train":
        train = [py, "-m", "ovo.train", f"hydra.run.dir={work / 'train'}", "logger=csv"]
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
            raise RuntimeError(f"{zip_path} is missing: carry .gpu-carry/data (see --pack)")
        print(f"[gpu-check] unzipping {zip_path} into {target}")
        shutil.unpack_archive(zip_path, target)


TEST_LINE = re.compile(r"^(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")


def test_results(lines: list[str], smoke: bool) -> dict:
    """Per case outcomes from pytest's ``-v`` lines (complete up to a kill), or the collected
    cases of a ``--collect-only`` run; ``not_run`` = selected but never finished."""
    if smoke:
        cases = [ln for ln in lines if re.match(r"^tests/\S+::\S+$", ln)]
        return {"collected": len(cases), "cases": {c: "collected" for c in cases}}
    cases: dict[str, str] = {}
    for ln in lines:
        m = TEST_LINE.match(ln)
        if m:
            cases[m.group(1)] = m.group(2)
    selected = next(
        (int(m.group(1)) for ln in lines if (m := re.search(r"(\d+) selected", ln))), len(cases)
    )
    counts = {k: sum(v == k for v in cases.values()) for k in ("PASSED", "FAILED", "ERROR")}
    return {
        "selected": selected,
        "passed": counts["PASSED"],
        "failed": counts["FAILED"] + counts["ERROR"],
        "skipped": sum(v in ("SKIPPED", "XFAIL") for v in cases.values()),
        "not_run": max(selected - len(cases), 0),
        "cases": cases,
    }


def panel_lines(work: Path) -> list[str]:
    """The short training's validation panel, one line per subnet (so a broken GPU training
    shows as a number)."""
    panel = work / "train" / "panel.json"
    if not panel.is_file():
        return ["no panel.json was written"]
    return [
        f"{name:>10s}  {metrics}"
        for name, metrics in json.loads(panel.read_text())["panel"].items()
    ]


# ---- the summary ---------------------------------------------------------------------------


@dataclass
class StageResult:
    name: str
    share_s: float
    limit_s: float | None = None
    seconds: float = 0.0
    state: str = "not run"  # ok / failed / timeout / not run
    rc: int | None = None
    why: str = ""
    extra: dict = field(default_factory=dict)


def stage_state(rc: int) -> str:
    return "ok" if rc == 0 else ("timeout" if rc == 124 else "failed")


def _find(rows: list[dict], check: Check) -> dict | None:
    for r in rows:
        if r["measure"] == check.measure and r.get("stage") == check.stage:
            if check.arch is None or r["setting"].startswith(f"tiny-{check.arch} "):
                return r
    return None


def _meets(value: float, target: str) -> bool:
    op, num = target.split()
    return value >= float(num) if op == ">=" else value <= float(num)


def evaluate(checks: tuple[Check, ...], rows: list[dict], stages: dict[str, StageResult]) -> list:
    """One line per check: its value and met / not met / not run (why) / reported."""
    out = []
    for c in checks:
        line = {"check": c.label, "stage": c.stage, "target": c.target or "report"}
        row = _find(rows, c)
        if row is None or row["value"] is None:
            st = stages.get(c.stage)
            if row is not None:
                why = "the row measured nothing (n/a at this size)"
            elif st is None:
                why = f"stage {c.stage} not selected"
            elif st.state == "not run":
                why = f"stage {c.stage} not run: {st.why}"
            elif st.state == "ok":
                why = f"stage {c.stage} ended without this row"
            else:
                why = f"stage {c.stage} {st.state} (exit {st.rc}) before this row"
            out.append(line | {"value": None, "setting": "", "state": "not run", "why": why})
            continue
        value = row["value"]
        state = ("met" if _meets(value, c.target) else "not met") if c.target else "reported"
        note = c.note(row["detail"]) if c.note else ""
        out.append(
            line
            | {"value": value, "unit": c.unit, "setting": row["setting"], "state": state}
            | {"why": note}
        )
    return out


def tests_check(st: StageResult | None, smoke: bool) -> dict:
    line = {"check": "every CUDA test case that ran passes", "stage": "tests"}
    line |= {"target": "all pass", "setting": "pytest -m cuda"}
    res = st.extra if st else {}
    if st is None or st.state == "not run":
        why = "stage tests not selected" if st is None else f"stage tests not run: {st.why}"
        return line | {"value": None, "state": "not run", "why": why}
    if smoke:
        n = res.get("collected", 0)
        return line | {"value": None, "state": "not run", "why": f"smoke: {n} cases collected"}
    ran = res.get("passed", 0) + res.get("failed", 0)
    why = f"{res.get('passed', 0)} passed, {res.get('failed', 0)} failed, "
    why += f"{res.get('skipped', 0)} skipped, {res.get('not_run', 0)} not run"
    if st.state != "ok":
        why += f" (stage {st.state})"
    if ran == 0:
        return line | {"value": None, "state": "not run", "why": why}
    state = "met" if res.get("failed", 0) == 0 else "not met"
    return line | {"value": f"{res['passed']}/{ran}", "state": state, "why": why}


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.3f}" if not unit else f"{value:.4g} {unit}"


def summary_markdown(summary: dict) -> str:
    env = summary.get("env") or {}
    lines = [
        f"# ovo gpu-check{' (smoke)' if summary['smoke'] else ''}: "
        f"{env.get('gpu') or 'no GPU'}, torch {env.get('torch')}, CUDA {env.get('cuda')}",
        "",
        f"budget {summary['budget_s']:.0f} s, wall {summary['wall_s']:.1f} s, "
        f"commit {summary['commit']}",
        "",
        "| stage | budget s | limit s | took s | state |",
        "|---|---:|---:|---:|---|",
    ]
    for s in summary["stages"].values():
        limit = "-" if s["limit_s"] is None else f"{s['limit_s']:.0f}"
        state = s["state"] + (f": {s['why']}" if s["why"] else "")
        lines.append(
            f"| {s['name']} | {s['share_s']:.0f} | {limit} | {s['seconds']:.1f} | {state} |"
        )
    lines += ["", "| check | value | target | state | note |", "|---|---:|---|---|---|"]
    for c in summary["checks"]:
        value = _fmt(c["value"], c.get("unit", ""))
        lines.append(f"| {c['check']} | {value} | {c['target']} | {c['state']} | {c['why']} |")
    if summary.get("panel"):
        lines += ["", "validation panel of the short training:", ""]
        lines += [f"    {panel}" for panel in summary["panel"]]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:  # no git on the machine
        return "unknown"


def merge_bench(work: Path, stages: list[Stage]) -> dict:
    """The bench stages' rows in one table, each row tagged with its stage."""
    merged: dict = {"meta": {}, "rows": []}
    for stage in stages:
        path = work / f"{stage.name}.json"
        if stage.name in BENCH_STAGES and path.is_file():
            data = json.loads(path.read_text())
            merged["rows"] += [r | {"stage": stage.name} for r in data.pop("rows")]
            merged["meta"][stage.name] = data
    return merged


Execute = Callable[[Stage, float], tuple[int, list[str]]]


def run(
    args: argparse.Namespace,
    clock: Callable[[], float] = time.monotonic,
    execute: Execute | None = None,
) -> dict:
    """Run the stages under the budget; write the output folder; return the summary.

    On a GPU machine the stages run in turn, each under :func:`stage_limit`. With ``--smoke``
    the stages after ``env`` run side by side (toy stages are independent; one thread each),
    each under its toy share. ``execute(stage, limit)`` runs a child stage (tests replace it)."""
    stages = stage_list(args.stages)
    share = {s.name: float(s.smoke_s if args.smoke else s.budget_s) for s in stages}
    if args.budget is not None:
        budget = float(args.budget)
    elif args.smoke:  # env, then the rest side by side: the longest of them
        budget = share.get("env", 0.0) + max((v for k, v in share.items() if k != "env"), default=0)
    else:
        budget = float(DEFAULT_BUDGET)
    out = Path(args.out or REPO / "outputs" / "gpu_check" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ovo-gpu-check-"))
    log = Log(out / "gpu_check.log")
    env = child_env(args.smoke)
    if execute is None:
        execute = lambda stage, limit: run_child(  # noqa: E731
            stage_command(stage, work, args.smoke),
            log,
            limit,
            env,
            prefix=f"[{stage.name}] " if args.smoke else "",
        )
    start = clock()
    results = {s.name: StageResult(s.name, share[s.name]) for s in stages}
    summary: dict = {"smoke": args.smoke, "budget_s": budget, "commit": _commit(), "env": None}

    def run_stage(stage: Stage, limit: float, left: float) -> None:
        res = results[stage.name]
        minimum = min(stage.min_s, share[stage.name])
        if limit < minimum:
            res.why = f"needs >= {minimum:.0f} s, {max(left, 0):.0f} s of the budget left"
            log.line(f"\n[gpu-check] stage {stage.name}: not run ({res.why})")
            return
        res.limit_s = round(limit, 1)
        log.line(
            f"\n[gpu-check] stage {stage.name} (share {share[stage.name]:.0f} s, "
            f"limit {limit:.0f} s, {left:.0f} s of the budget left): {stage.what}"
        )
        t0 = clock()
        try:
            if stage.name == "env":
                summary["env"] = stage_env(log, args.smoke)
                res.rc = 0
            else:
                if stage.needs_data:
                    prepare_data(args.smoke)
                res.rc, lines = execute(stage, limit)
                if stage.name == "tests":
                    res.extra = test_results(lines, args.smoke)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
            log.line(f"[gpu-check] stage {stage.name} failed: {err}")
            res.rc, res.why = 1, str(err)
        res.seconds = round(clock() - t0, 1)
        res.state = stage_state(res.rc)
        log.line(f"[gpu-check] stage {stage.name}: {res.state} after {res.seconds:.1f} s")
        if stage.name == "train" and res.rc == 0:
            summary["panel"] = panel_lines(work)

    try:
        in_turn = [s for s in stages if not args.smoke or s.name == "env"]
        side_by_side = [s for s in stages if s not in in_turn]
        for stage in in_turn:
            left = budget - (clock() - start)
            later = sum(share[s.name] for s in stages[stages.index(stage) + 1 :])
            run_stage(stage, stage_limit(share[stage.name], left, later), left)
            if stage.name == "env" and results["env"].rc != 0:  # nothing runs without it
                for s in stages[1:]:
                    results[s.name].why = "env failed"
                side_by_side = []
                break
        if side_by_side:
            left = budget - (clock() - start)
            with ThreadPoolExecutor(len(side_by_side)) as pool:
                list(pool.map(lambda s: run_stage(s, min(share[s.name], left), left), side_by_side))
        bench = merge_bench(work, stages)
        (out / "bench.json").write_text(json.dumps(bench, indent=2))
        summary["wall_s"] = round(clock() - start, 1)
        summary["stages"] = {k: asdict(v) for k, v in results.items()}
        summary["checks"] = evaluate(CHECKS, bench["rows"], results)
        summary["checks"].append(tests_check(results.get("tests"), args.smoke))
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        text = summary_markdown(summary)
        (out / "summary.md").write_text(text)
        log.line("\n[gpu-check] summary\n\n" + text + f"\neverything: {out}")
    finally:
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= MAX_FILES, files  # the device tool brings back only a few
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1] + "\n" + stage_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stages", nargs="+", default=["core"], help="stages or groups (core, all)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help=f"seconds for all stages (default {DEFAULT_BUDGET}; --smoke: the stages' toy limits)",
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default outputs/gpu_check/<time>)"
    )
    parser.add_argument(
        "--pack", action="store_true", help="here: print and check what must travel"
    )
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    args = parser.parse_args(argv)
    if args.pack:
        return pack(stage_list(args.stages), int(args.budget or DEFAULT_BUDGET))
    summary = run(args)
    if any(s["state"] in ("failed", "timeout") for s in summary["stages"].values()):
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
