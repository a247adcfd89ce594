"""``ovo.jobs``: the one resumable job runner (skip when done, resume, identity, atomic
``done.json``, failures with the log's tail, GPUs/threads per slot). The jobs are tiny Python
scripts, so these tests take a second."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ovo.errors import ConfigError
from ovo.jobs import Job, JobFailed, Pool, launch, read_done

# a job that counts its runs in runs.txt, records its argv and env, and fails while FAIL exists
SCRIPT = """
import json, os, sys
from pathlib import Path
d = Path(sys.argv[1])
runs = d / "runs.txt"
runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
(d / "ckpt").write_text("partial")
(d / "seen.json").write_text(json.dumps({"argv": sys.argv[2:], "omp": os.environ["OMP_NUM_THREADS"],
    "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}))
print("line one"); print("the last words", file=sys.stderr)
sys.exit(3 if (d / "FAIL").exists() else 0)
"""


def job(run_dir: Path, identity=None, **kw) -> Job:
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = (sys.executable, "-c", SCRIPT, str(run_dir))
    return Job("toy", argv, run_dir, identity, **kw)


def runs(run_dir: Path) -> int:
    path = run_dir / "runs.txt"
    return len(path.read_text()) if path.exists() else 0


def test_a_finished_job_is_skipped(tmp_path):
    pool = Pool(1, gpus=[])
    first = pool.run([job(tmp_path / "a")])[0]
    assert runs(tmp_path / "a") == 1 and read_done(tmp_path / "a") == first
    assert first["command"][-1] == str(tmp_path / "a") and not first["resumed"]
    again = pool.run([job(tmp_path / "a")])[0]
    assert runs(tmp_path / "a") == 1 and again == first  # done.json: not run again


def test_a_failure_raises_with_the_log_tail_and_resumes_next_time(tmp_path):
    d = tmp_path / "b"
    j = job(d, resume_file="ckpt", resume_args=("--resume",), log_name="train.log")
    (d / "FAIL").write_text("")
    with pytest.raises(JobFailed) as err:
        Pool(1, gpus=[]).run([j])
    text = str(err.value)
    assert "exit status 3" in text and "the last words" in text and str(d / "train.log") in text
    assert read_done(d) is None
    (d / "FAIL").unlink()
    record = Pool(1, gpus=[]).run([j])[0]
    assert record["resumed"] and record["command"][-1] == "--resume"
    assert json.loads((d / "seen.json").read_text())["argv"] == ["--resume"]
    assert (d / "train.log").read_text().count("line one") == 2  # the log is appended to


def test_a_run_dir_of_another_identity_is_refused_before_anything_runs(tmp_path):
    d = tmp_path / "c"
    Pool(1, gpus=[]).run([job(d, identity={"arch": 1, "seed": 0})])
    assert json.loads((d / "job.json").read_text()) == {"arch": 1, "seed": 0}
    fresh = job(tmp_path / "fresh")
    with pytest.raises(ConfigError, match="another arch"):
        Pool(1, gpus=[]).run([fresh, job(d, identity={"arch": 2, "seed": 0})])
    assert runs(d) == 1 and runs(tmp_path / "fresh") == 0  # checked before the first job ran
    # a key the record lacks (an older writer) is not checked; the same identity is reused
    Pool(1, gpus=[]).run([job(d, identity={"arch": 1, "seed": 0, "new": "x"})])
    assert runs(d) == 1


def test_done_json_is_written_atomically(tmp_path, monkeypatch):
    import ovo.atomic

    def crash(fd):  # the machine dies while done.json is being written
        raise OSError("power cut")

    monkeypatch.setattr(ovo.atomic.os, "fsync", crash)
    d = tmp_path / "d"
    with pytest.raises(OSError, match="power cut"):
        Pool(1, gpus=[]).run([job(d)])
    assert not (d / "done.json").exists() and not list(d.glob(".done.json*"))
    monkeypatch.undo()
    Pool(1, gpus=[]).run([job(d)])  # not done: it runs again
    assert runs(d) == 2 and read_done(d)["wall_s"] >= 0


def test_slots_get_gpus_round_robin_or_threads(tmp_path):
    pool = Pool(3, threads_per_job=2, gpus=["3", "5"])
    assert [pool.env(s)["CUDA_VISIBLE_DEVICES"] for s in range(3)] == ["3", "5", "3"]
    assert pool.env(0)["OMP_NUM_THREADS"] == "2"
    assert "CUDA_VISIBLE_DEVICES" not in Pool(2, gpus=[]).env(1)
    pool.run([job(tmp_path / "e")])
    seen = json.loads((tmp_path / "e" / "seen.json").read_text())
    assert seen["gpu"] in ("3", "5") and seen["omp"] == "2"
    with pytest.raises(ConfigError, match="jobs=0"):
        Pool(0)


def test_launch_streams_without_a_log(tmp_path, capfd):
    rc, seconds = launch([sys.executable, "-c", "print('streamed')"])
    assert rc == 0 and seconds > 0 and "streamed" in capfd.readouterr().out
