"""Calibration of a latency table: the straight line from a subnet's sum of parts to its
whole-model time, fitted on a few whole subnets (:func:`ovo.latency.table.measure_table`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ovo.space import Arch, SearchSpace

# mean relative miss of the plain sum on the calibration subnets above which the line is used
CALIBRATION_THRESHOLD = 0.10


def read_calibration(data: Any) -> dict[str, Any] | None:
    """A table file's calibration (``None``: tables written before calibration, or without)."""
    if data is None:
        return None
    scale, offset = float(data["scale"]), float(data["offset_ms"])
    if not scale > 0:
        raise ValueError(f"calibration scale {scale} must be positive")
    return {**data, "scale": scale, "offset_ms": offset}


def fit_calibration(parts_ms: Sequence[float], measured_ms: Sequence[float]) -> tuple[float, float]:
    """``(scale, offset_ms)`` of the least-squares line ``measured = scale * parts + offset``;
    through the origin when fewer than two distinct sums or a line that would not increase."""
    n = len(parts_ms)
    mean_p, mean_m = sum(parts_ms) / n, sum(measured_ms) / n
    var = sum((p - mean_p) ** 2 for p in parts_ms)
    if n >= 2 and var > 0:
        scale = sum((p - mean_p) * (m - mean_m) for p, m in zip(parts_ms, measured_ms)) / var
        if scale > 0:
            return scale, mean_m - scale * mean_p
    return sum(p * m for p, m in zip(parts_ms, measured_ms)) / sum(p * p for p in parts_ms), 0.0


def calibration_archs(space: SearchSpace, count: int) -> list[Arch]:
    """``count`` uniform archs from the smallest to the largest of ``space`` (every dimension's
    choice index stepped together), distinct."""
    archs: list[Arch] = []
    for k in range(count):
        t = k / max(count - 1, 1)

        def pick(choices: tuple, t: float = t) -> Any:
            return choices[round(t * (len(choices) - 1))]

        arch = Arch.uniform(
            pick(space.embed_dim), pick(space.depth), pick(space.num_heads), pick(space.mlp_ratio)
        )
        if arch not in archs:
            archs.append(arch)
    return archs
