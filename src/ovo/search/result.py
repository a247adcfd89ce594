"""What a search returns: every evaluated arch, per-generation records, best, top-k, fronts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ovo.budget import Constraints
from ovo.search.pareto import pareto_front
from ovo.space import Arch

RESULT_FORMAT = "ovo.search.result"
# 2: evaluations carry `images` and `complete`; `images_scored`, `num_fully_scored` added; best,
# top-k and fronts are over completely scored archs (all of them with fitness=full)
RESULT_VERSION = 2


@dataclass(frozen=True)
class EvaluatedArch:
    """One evaluated arch: its fitness, closed-form costs and the generation that evaluated it.

    ``images`` is how many fitness images it was scored on; ``complete`` says whether that was
    the whole split (always with ``fitness=full``). Only complete archs rank (best, top-k,
    parents, Pareto fronts); the others keep their partial accuracy as ``fitness``.
    """

    arch: Arch
    fitness: float
    params: int
    flops: int
    generation: int
    images: int = 0
    complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "fitness": self.fitness,
            "params": self.params,
            "flops": self.flops,
            "generation": self.generation,
            "images": self.images,
            "complete": self.complete,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluatedArch:
        return cls(
            Arch.from_dict(data["arch"]),
            float(data["fitness"]),
            int(data["params"]),
            int(data["flops"]),
            int(data["generation"]),
            int(data.get("images", 0)),  # format 1 did not record it
            bool(data.get("complete", True)),
        )


@dataclass(frozen=True)
class GenerationRecord:
    """Summary after one generation; ``best*`` and ``mean_top_k`` are over everything evaluated
    so far, ``new_*`` over this generation's new evaluations only (``None`` if there were none).
    """

    generation: int
    num_new: int
    num_evaluated: int
    best: EvaluatedArch
    top_k: int
    mean_top_k: float
    new_best_fitness: float | None
    new_mean_fitness: float | None

    @property
    def best_fitness(self) -> float:
        return self.best.fitness

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "num_new": self.num_new,
            "num_evaluated": self.num_evaluated,
            "best_fitness": self.best.fitness,
            "best": self.best.to_dict(),
            "top_k": self.top_k,
            "mean_top_k": self.mean_top_k,
            "new_best_fitness": self.new_best_fitness,
            "new_mean_fitness": self.new_mean_fitness,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationRecord:
        def opt(key: str) -> float | None:
            return None if data.get(key) is None else float(data[key])

        return cls(
            int(data["generation"]),
            int(data["num_new"]),
            int(data["num_evaluated"]),
            EvaluatedArch.from_dict(data["best"]),
            int(data["top_k"]),
            float(data["mean_top_k"]),
            opt("new_best_fitness"),
            opt("new_mean_fitness"),
        )


def rank(evaluated: list[EvaluatedArch]) -> list[EvaluatedArch]:
    """The completely scored archs by decreasing fitness; equal fitness ranks the cheaper arch
    first (fewer params, then fewer FLOPs: on a finite split, ties are common and the smaller
    arch is the better pick), and full ties keep evaluation order so the ranking is
    deterministic."""
    complete = [e for e in evaluated if e.complete]
    return sorted(complete, key=lambda e: (-e.fitness, e.params, e.flops))


@dataclass
class SearchResult:
    """All evaluated archs (in evaluation order) and the per-generation history of one search."""

    strategy: str
    evaluated: list[EvaluatedArch]
    history: list[GenerationRecord]
    constraints: Constraints = field(default_factory=Constraints)
    settings: dict[str, Any] = field(default_factory=dict)
    complete: bool = True

    @property
    def best(self) -> EvaluatedArch:
        ranked = rank(self.evaluated)
        if not ranked:
            raise ValueError("the search scored no arch on the whole fitness split")
        return ranked[0]

    @property
    def images_scored(self) -> int:
        """Arch x image forwards the search's fitness took."""
        return sum(e.images for e in self.evaluated)

    @property
    def best_arch(self) -> Arch:
        return self.best.arch

    def top_k(self, k: int) -> list[EvaluatedArch]:
        return rank(self.evaluated)[:k]

    def pareto(self, cost: Literal["params", "flops"] = "params") -> list[EvaluatedArch]:
        """Archs not dominated in (fitness up, ``cost`` down), by increasing cost."""
        if cost not in ("params", "flops"):
            raise ValueError(f"cost must be 'params' or 'flops', got {cost!r}")
        complete = [e for e in self.evaluated if e.complete]
        return pareto_front(complete, lambda e: e.fitness, lambda e: getattr(e, cost))

    @property
    def pareto_params(self) -> list[EvaluatedArch]:
        return self.pareto("params")

    @property
    def pareto_flops(self) -> list[EvaluatedArch]:
        return self.pareto("flops")

    def to_dict(self, top_k: int = 10) -> dict[str, Any]:
        """JSON-able summary (``results.json``): best, top-k, fronts, history, all evaluations."""
        return {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "strategy": self.strategy,
            "complete": self.complete,
            "constraints": self.constraints.to_dict(),
            "settings": self.settings,
            "num_evaluated": len(self.evaluated),
            "num_fully_scored": sum(e.complete for e in self.evaluated),
            "images_scored": self.images_scored,
            "best": self.best.to_dict() if rank(self.evaluated) else None,
            "top_k": [e.to_dict() for e in self.top_k(top_k)],
            "pareto_params": [e.to_dict() for e in self.pareto_params],
            "pareto_flops": [e.to_dict() for e in self.pareto_flops],
            "history": [r.to_dict() for r in self.history],
            "evaluated": [e.to_dict() for e in self.evaluated],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchResult:
        """Inverse of :meth:`to_dict` (derived fields are recomputed, not read)."""
        return cls(
            strategy=str(data["strategy"]),
            evaluated=[EvaluatedArch.from_dict(e) for e in data["evaluated"]],
            history=[GenerationRecord.from_dict(r) for r in data["history"]],
            constraints=Constraints.from_dict(data.get("constraints")),
            settings=dict(data.get("settings", {})),
            complete=bool(data.get("complete", True)),
        )
