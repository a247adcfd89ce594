"""How a search scores each generation's new candidates: on the whole fitness split (``full``,
AutoFormer's protocol) or by successive halving (``halving``).

Successive halving reads the fitness split in a seeded, class-stratified order (so every prefix
is class-balanced) at growing rungs of ``N / eta^K, ..., N / eta, N`` images (the smallest at
least ``min_images``). Every candidate is scored on the first rung; after each rung only the best
``1 / eta`` of the race go on (ties at the cut go on together), and of those only archs that can
still make the top-k: an arch whose optimistic accuracy (``z`` binomial standard errors above its
partial accuracy) is below the fitness of the current k-th best fully scored arch stops. Survivors
are scored on the next rung's new images only: an arch's hits on the images it has seen are kept,
so no image is scored twice for one arch. Only archs scored on the whole split get a fitness
that ranks them (parents, best, top-k); the others are recorded with their partial accuracy and
never proposed again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ovo.errors import ConfigError
from ovo.space import Arch

FitnessMode = Literal["full", "halving"]
# hits of each arch on the split's images [start, stop) (in the stratified order)
ScoreRange = Callable[[list[Arch], int, int], Sequence[int]]


@dataclass(frozen=True)
class Scored:
    """One candidate's score after a generation's race."""

    arch: Arch
    fitness: float  # top-1 (%) on the images it was scored on
    images: int  # images it was scored on
    complete: bool  # scored on the whole split


@dataclass(frozen=True)
class HalvingSettings:
    """``halving`` settings of ``conf/search.yaml`` (see the module docstring)."""

    eta: int = 3
    min_images: int = 100
    z: float = 2.0

    def __post_init__(self) -> None:
        if self.eta < 2:
            raise ConfigError(f"halving.eta={self.eta} must be at least 2")
        if self.min_images < 1:
            raise ConfigError(f"halving.min_images={self.min_images} must be at least 1")
        if self.z < 0:
            raise ConfigError(f"halving.z={self.z} must be >= 0 (0: no racing bound)")

    def rungs(self, total: int) -> list[int]:
        """Image counts of the rungs for a split of ``total`` images (the last is ``total``)."""
        rungs = [total]
        while rungs[0] // self.eta >= self.min_images:
            rungs.insert(0, rungs[0] // self.eta)
        return rungs


class Race(Protocol):
    """Scores a generation's new archs; ``threshold`` is the fitness an arch must be able to
    reach to enter the current top-k (``None`` until k archs are fully scored)."""

    def settings(self) -> dict[str, Any]: ...

    def race(self, archs: list[Arch], threshold: float | None) -> list[Scored]: ...


class FullFitness:
    """Every candidate scored on the whole split by ``fitness(archs) -> top-1 (%)``."""

    def __init__(self, fitness: Callable[[list[Arch]], Sequence[float]], images: int = 0) -> None:
        self.fitness, self.images = fitness, int(images)

    def settings(self) -> dict[str, Any]:
        return {"mode": "full"}

    def race(self, archs: list[Arch], threshold: float | None) -> list[Scored]:
        scores = list(self.fitness(list(archs)))
        if len(scores) != len(archs):
            raise ValueError(f"fitness returned {len(scores)} scores for {len(archs)} archs")
        return [Scored(a, float(s), self.images, True) for a, s in zip(archs, scores)]


def optimistic(hits: int, images: int, z: float) -> float:
    """Top-1 (%) ``z`` standard errors above ``hits / images`` (Wilson's upper bound)."""
    if images == 0:
        return 100.0
    p, n = hits / images, images
    center = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100.0 * min(1.0, (center + margin) / (1 + z * z / n))


class Halving:
    """Successive halving over the stratified fitness split (see the module docstring)."""

    def __init__(self, score_range: ScoreRange, total: int, settings: HalvingSettings) -> None:
        if total < 1:
            raise ConfigError("the fitness split is empty: successive halving has nothing to score")
        self.score_range, self.total, self.config = score_range, int(total), settings

    def settings(self) -> dict[str, Any]:
        c = self.config
        return {"mode": "halving", "eta": c.eta, "min_images": c.min_images, "z": c.z}

    def race(self, archs: list[Arch], threshold: float | None) -> list[Scored]:
        hits = dict.fromkeys(archs, 0)
        seen = 0
        alive = list(archs)
        out: dict[Arch, Scored] = {}
        rungs = self.config.rungs(self.total)
        for i, rung in enumerate(rungs):
            new_hits = self.score_range(alive, seen, rung)
            for arch, h in zip(alive, new_hits):
                hits[arch] += int(h)
            seen = rung
            last = i == len(rungs) - 1
            scored = {a: Scored(a, 100.0 * hits[a] / seen, seen, last) for a in alive}
            if last:
                out.update(scored)
                break
            keep = self._survivors(alive, hits, seen, threshold)
            out.update({a: scored[a] for a in alive if a not in keep})
            alive = keep
            if not alive:
                break
        return [out[a] for a in archs]

    def _survivors(
        self, alive: list[Arch], hits: dict[Arch, int], seen: int, threshold: float | None
    ) -> list[Arch]:
        """The best ``ceil(len / eta)`` (ties at the cut included) that can still make the
        top-k, in their race order."""
        quota = math.ceil(len(alive) / self.config.eta)
        cut = sorted((hits[a] for a in alive), reverse=True)[quota - 1]
        keep = [a for a in alive if hits[a] >= cut]
        if threshold is not None:
            keep = [a for a in keep if optimistic(hits[a], seen, self.config.z) >= threshold]
        return keep
