"""A command's run directory: writable and roomy enough before any work, and held by one run."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ovo.errors import ConfigError


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
