"""Calibration of a latency table: the straight line from a subnet's sum of parts to its
whole-model time, fitted on a few whole subnets (:func:`ovo.latency.table.measure_table`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ovo.space import Arch, SearchSpace

# mean relative miss of the plain sum on the calibration subnets above which the line is used
CALIBRATION_THRESHOLD = 0.10


@dataclass(frozen=True)
class Calibration:
    """The line ``whole-model ms = scale * sum of parts + offset_ms`` fitted on a table's
    calibration subnets, and whether predictions go through it (``applied``: the plain sum
    missed those subnets by more than :data:`CALIBRATION_THRESHOLD`). The subnets, their sums
    and their measured times are kept for the record."""

    scale: float
    offset_ms: float
    applied: bool
    sum_of_parts_miss: float | None = None
    archs: tuple[dict[str, Any], ...] = ()
    parts_ms: tuple[float, ...] = ()
    measured_ms: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.scale > 0:  # a decreasing line would reorder subnets
            raise ValueError(f"calibration scale {self.scale} must be positive")

    def __call__(self, sum_of_parts_ms: float) -> float:
        """The predicted whole-model milliseconds of a subnet whose parts add up to this."""
        if not self.applied:
            return sum_of_parts_ms
        return self.scale * sum_of_parts_ms + self.offset_ms

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """A table file's calibration (``applied`` must be there: no default is guessed)."""
        miss = data.get("sum_of_parts_miss")
        return cls(
            float(data["scale"]),
            float(data["offset_ms"]),
            bool(data["applied"]),
            None if miss is None else float(miss),
            tuple(dict(a) for a in data.get("archs", ())),
            tuple(float(v) for v in data.get("parts_ms", ())),
            tuple(float(v) for v in data.get("measured_ms", ())),
        )


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
