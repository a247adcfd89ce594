"""Closed-form cost model: microseconds per arch for its parameter and FLOP counts."""

from __future__ import annotations

import random
import time

from ovo.supernet import CostModel, ViTConfig

from .fixture import tiny_space
from .report import Row


def measure(quick: bool) -> list[Row]:
    space = tiny_space()
    cost = CostModel(ViTConfig(), space.head_dim)  # what a supernet's .cost is
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(50 if quick else 2000)]
    start = time.perf_counter()
    for a in archs:
        cost.params(a)
        cost.macs(a)
    us = (time.perf_counter() - start) / len(archs) * 1e6
    return [Row("closed-form params + FLOPs per arch", "tiny, 224px", us, "< 100", unit="us")]
