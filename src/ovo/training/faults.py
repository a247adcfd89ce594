"""Fault injection for testing that interrupted runs lose nothing (used by ovo's own tests).

Add to a training run with ``+callbacks.fault._target_=ovo.training.faults.KillAtStep
+callbacks.fault.step=N``: the process SIGKILLs itself (no cleanup, exactly like ``kill -9``)
once ``N`` optimizer steps are done. A search takes the same spelling:
``+callbacks.fault._target_=ovo.training.faults.KillAfterGeneration +callbacks.fault.generation=G``
kills it once generation ``G`` is done and its state is saved.
"""

from __future__ import annotations

import os
import signal

import lightning as L


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterGeneration:
    """A search callback (``callbacks`` of ``conf/search.yaml``): SIGKILL once generation
    ``generation`` is done (its state, saved before callbacks run, is on disk)."""

    def __init__(self, generation: int) -> None:
        self.generation = int(generation)

    def on_generation(self, generation: int, *args: object) -> None:
        if generation >= self.generation:
            kill_self()


class KillAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = int(step)

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            kill_self()
