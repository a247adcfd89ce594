"""ovo's threading default (ovo/threads.py): applied by ``import ovo`` before torch loads its
OpenMP runtime, the user's own settings kept, the CPU count from affinity and cgroup quota, one
thread per DataLoader worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from ovo import threads
from ovo.data import FakeDataModule
from ovo.data.sampling import SeededDataset
from ovo.errors import ConfigError

from helpers import REPO

PROBE = (
    "import ovo, os, torch; "
    "print(torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'), "
    "os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without threading settings (the test process's own `import ovo` exported
    some), plus ``extra``; libgomp prints what it read at start-up (``OMP_DISPLAY_ENV``)."""
    prefixes = ("OMP_", "GOMP_", "MKL_", "OVO_THREADS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return env | {"OMP_DISPLAY_ENV": "VERBOSE"} | extra


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True
    )


def libgomp_read(stderr: str, var: str) -> str:
    """The value libgomp says it initialised ``var`` to."""
    return re.search(rf"^\s*{var} = '([^']*)'", stderr, re.M)[1]


def test_import_ovo_sets_the_default_before_torch_loads_and_keeps_the_users():
    """Fresh processes, as every ``python -m ovo.<command>`` starts: libgomp itself reports the
    spin count ovo set (its own default is 300000), torch runs on the usable CPUs; a user's own
    ``OMP_*`` settings reach torch unchanged and ovo adds no waiting setting of its own."""
    envs = [clean_env(), clean_env(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="active")]
    with ThreadPoolExecutor(2) as pool:  # two slow imports side by side
        default, user = pool.map(lambda env: run_python(PROBE, env), envs)
    assert default.returncode == 0 and user.returncode == 0, default.stderr + user.stderr
    cpus = threads.usable_cpus()
    assert default.stdout.split() == [str(cpus), str(cpus), threads.SPIN_COUNT, "None"]
    assert libgomp_read(default.stderr, "GOMP_SPINCOUNT") == threads.SPIN_COUNT
    assert libgomp_read(default.stderr, "OMP_NUM_THREADS") == str(cpus)
    assert user.stdout.split() == ["1", "1", "None", "active"]
    assert libgomp_read(user.stderr, "OMP_WAIT_POLICY") == "ACTIVE"
    assert libgomp_read(user.stderr, "GOMP_SPINCOUNT") != threads.SPIN_COUNT


def test_settings_made_after_torch_loaded_do_not_reach_libgomp():
    """Why the hook is the first line of ``ovo/__init__.py``: libgomp reads its environment once,
    when torch loads it. ovo/threads.py is loaded by path here (no torch behind it)."""
    code = (
        "import importlib.util, sys, torch; "
        f"spec = importlib.util.spec_from_file_location('t', {str(REPO / 'src/ovo/threads.py')!r}); "
        "t = sys.modules['t'] = importlib.util.module_from_spec(spec); "
        "spec.loader.exec_module(t); "
        "print(t.APPLIED.late)"
    )
    done = run_python(code, clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]
    assert libgomp_read(done.stderr, "GOMP_SPINCOUNT") == "300000"  # libgomp's own default


def test_a_bad_switch_is_one_error_line_under_python_m():
    done = subprocess.run(
        [sys.executable, "-m", "ovo.train"],  # refused on its first line, before torch loads
        env=clean_env(OVO_THREADS="4"),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ovo: error: OVO_THREADS='4': use 'off' (leave torch's threading alone) or unset it; "
        "set a thread count with OMP_NUM_THREADS=N"
    ]


def test_configure_sets_only_what_the_user_left_unset():
    env: dict[str, str] = {}
    decided = threads.configure(env, cpus=3)
    assert env["OMP_NUM_THREADS"] == "3" and env["GOMP_SPINCOUNT"] == threads.SPIN_COUNT
    assert dict(decided.exported) == {"GOMP_SPINCOUNT": threads.SPIN_COUNT, "OMP_NUM_THREADS": "3"}
    assert decided.kept == () and not decided.late
    # either variable of a group is the user's say over that group
    env = {"MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    decided = threads.configure(env, cpus=3)
    assert env == {"MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    assert decided.exported == () and dict(decided.kept) == env
    env = {"GOMP_SPINCOUNT": "0"}
    threads.configure(env, cpus=3)
    assert env["GOMP_SPINCOUNT"] == "0" and env["OMP_NUM_THREADS"] == "3"


def test_off_sets_nothing_and_explicit_threads_win():
    env = {"OVO_THREADS": "off"}
    assert threads.configure(env, cpus=3).exported == () and env == {"OVO_THREADS": "off"}
    env = {"OMP_NUM_THREADS": "8", "MKL_NUM_THREADS": "8"}
    decided = threads.configure(env, threads=2, cpus=3)
    assert env["OMP_NUM_THREADS"] == "2" and env["MKL_NUM_THREADS"] == "2"  # torch reads MKL's
    assert "OMP_NUM_THREADS" not in dict(decided.kept)
    with pytest.raises(ConfigError, match="threads=0 must be at least 1"):
        threads.configure({}, threads=0)
    with pytest.raises(ConfigError, match="OVO_THREADS='1'"):
        threads.configure({"OVO_THREADS": "1"})


def test_a_child_recomputes_what_an_ovo_parent_set():
    """A login node's count must not follow a SLURM job to its compute node: what an ovo process
    set is marked, and a child recomputes it; a value the user changed since is the user's."""
    parent: dict[str, str] = {}
    threads.configure(parent, cpus=4)
    child = dict(parent)
    threads.configure(child, cpus=16)
    assert child["OMP_NUM_THREADS"] == "16"
    child = parent | {"OMP_NUM_THREADS": "3"}  # e.g. ovo.rank's threads_per_job
    decided = threads.configure(child, cpus=16)
    assert child["OMP_NUM_THREADS"] == "3" and ("OMP_NUM_THREADS", "3") in decided.kept
    child = parent | {"OVO_THREADS": "off"}  # off: the parent's settings go too
    threads.configure(child, cpus=16)
    assert "OMP_NUM_THREADS" not in child and "GOMP_SPINCOUNT" not in child


def _cgroup(tmp_path, self_line: str, files: dict[str, str]):
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    me = tmp_path / "self_cgroup"
    me.write_text(self_line)
    return root, me


def test_cpu_count_from_a_cgroup_v2_quota(tmp_path):
    root, me = _cgroup(tmp_path, "0::/\n", {"cpu.max": "150000 100000\n"})
    assert threads.cgroup_cpu_limit(root, me) == 1.5
    assert threads.usable_cpus(8, root, me) == 1  # rounded down: a 2nd thread is throttled
    # the smallest limit over the process's cgroup and its ancestors
    root, me = _cgroup(
        tmp_path / "nested",
        "0::/a/b\n",
        {"a/cpu.max": "300000 100000", "a/b/cpu.max": "max 100000", "cpu.max": "max 100000"},
    )
    assert threads.cgroup_cpu_limit(root, me) == 3.0
    assert threads.usable_cpus(8, root, me) == 3
    assert threads.usable_cpus(2, root, me) == 2  # the affinity mask is smaller
    root, me = _cgroup(tmp_path / "none", "0::/\n", {"cpu.max": "max 100000"})
    assert threads.cgroup_cpu_limit(root, me) is None
    assert threads.usable_cpus(6, root, me) == 6
    root, me = _cgroup(tmp_path / "tiny", "0::/\n", {"cpu.max": "20000 100000"})
    assert threads.usable_cpus(6, root, me) == 1


def test_cpu_count_from_a_cgroup_v1_quota(tmp_path):
    # a container: /proc/self/cgroup names the host's path, the container's cgroup is the mount
    files = {"cpu,cpuacct/cpu.cfs_quota_us": "250000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000"}
    root, me = _cgroup(tmp_path, "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n", files)
    assert threads.cgroup_cpu_limit(root, me) == 2.5
    assert threads.usable_cpus(16, root, me) == 2
    files = {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}  # no quota
    root, me = _cgroup(tmp_path / "none", "1:cpu:/\n", files)
    assert threads.cgroup_cpu_limit(root, me) is None
    assert threads.usable_cpus(16, root, me) == 16


def test_usable_cpus_here_is_the_affinity_mask_when_no_quota():
    if threads.cgroup_cpu_limit() is not None:
        pytest.skip("this machine has a CPU quota")
    assert threads.usable_cpus() == len(os.sched_getaffinity(0))


def test_dataloader_workers_get_one_thread(monkeypatch):
    """ovo's loaders give each worker one thread: torch's (its own worker loop sets that too) and
    ``OMP_NUM_THREADS=1`` for whatever the worker loads or starts (the parent's says more)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # what a forked worker inherits

    def probe(self, key):  # runs in the (forked) worker
        return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")

    monkeypatch.setattr(SeededDataset, "__getitem__", probe)
    dm = FakeDataModule(num_train=64, num_val=16, batch_size=8, num_workers=1)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        counts, omp = next(iter(loader))
        assert set(counts.tolist()) == {1} and set(omp) == {"1"}
        assert loader.worker_init_fn is threads.worker_init
