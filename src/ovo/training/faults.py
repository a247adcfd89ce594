"""Fault injection for testing that interrupted runs lose nothing (used by ovo's own tests).

Add to a training run with ``+callbacks.fault._target_=ovo.training.faults.KillAtStep
+callbacks.fault.step=N``: the process SIGKILLs itself (no cleanup, exactly like ``kill -9``)
once ``N`` optimizer steps are done. The search has ``+fault.kill_after_generation=G``.
"""

from __future__ import annotations

import os
import signal

import lightning as L


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = int(step)

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            kill_self()
