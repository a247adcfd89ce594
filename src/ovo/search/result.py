"""What a search returns: every evaluated arch, per-generation records, best, top-k, fronts;
and ``results.json``, which this module owns whole.

:class:`SearchResult` is the search loop's result. :class:`SearchReport` is ``results.json``:
the result plus what the search command measured around it (:class:`RunFacts`: checkpoint,
splits, timing, latency) and the scores on ``final_split`` of the top-k and of the front.
:func:`write_results` is its one writer and :func:`read_results` its one reader, which also
reads the files older ovo versions wrote (version 1 on).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ovo.atomic import atomic_write_json
from ovo.budget import Constraints
from ovo.errors import ConfigError
from ovo.search.front import Front
from ovo.search.pareto import pareto_front
from ovo.space import Arch

RESULT_FORMAT = "ovo.search.result"
# 2: evaluations carry `images` and `complete`; `images_scored`, `num_fully_scored` added; best,
# top-k and fronts are over completely scored archs (all of them with fitness=full)
# 3: written whole by `write_results` (same keys); `front`, `scored_with`, `warm_start`,
# `linas` added; evaluations reused from a warm start say `reused`
RESULT_VERSION = 3


@dataclass(frozen=True)
class EvaluatedArch:
    """One evaluated arch: its fitness, closed-form costs and the generation that evaluated it.

    ``images`` is how many fitness images it was scored on; ``complete`` says whether that was
    the whole split (always with ``fitness=full``). Only complete archs rank (best, top-k,
    parents, Pareto fronts); the others keep their partial accuracy as ``fitness``. ``reused``
    marks a score taken over from an earlier search (``warm_start``; generation -1): this search
    did not spend its images.
    """

    arch: Arch
    fitness: float
    params: int
    flops: int
    generation: int
    images: int = 0
    complete: bool = True
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = {
            "arch": self.arch.to_dict(),
            "fitness": self.fitness,
            "params": self.params,
            "flops": self.flops,
            "generation": self.generation,
            "images": self.images,
            "complete": self.complete,
        }
        if self.reused:  # absent otherwise: states and results read (and hash) as before
            data["reused"] = True
        return data

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
            bool(data.get("reused", False)),
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
    loops: list[dict[str, Any]] = field(default_factory=list)  # LINAS's per-loop records

    @property
    def best(self) -> EvaluatedArch:
        ranked = rank(self.evaluated)
        if not ranked:
            raise ValueError("the search scored no arch on the whole fitness split")
        return ranked[0]

    @property
    def images_scored(self) -> int:
        """Arch x image forwards the search's fitness took (reused scores cost it none)."""
        return sum(e.images for e in self.evaluated if not e.reused)

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
            **({"linas": {"loops": self.loops}} if self.strategy == "linas" else {}),
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
            loops=[dict(r) for r in (data.get("linas") or {}).get("loops", [])],
        )


# ---- results.json ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FinalScore:
    """An arch's top-1 and top-5 (%) on ``final_split``, scored once after the search."""

    acc1: float
    acc5: float


@dataclass(frozen=True)
class RunFacts:
    """What the search command used and measured around the search (``results.json``'s keys
    besides the result's own)."""

    checkpoint: str | None = None
    space: str | None = None
    constraints: dict[str, Any] | None = None  # the budget as recorded (None: the result's)
    fitness_split: str | None = None
    final_split: str = "val"
    fitness: dict[str, Any] | None = None  # the race's settings and split_images
    search_seconds: float | None = None
    eval_throughput: float | None = None  # arch-images per second
    archs_per_second: float | None = None
    compiled_graphs: int | None = None
    latency_table: dict[str, Any] | None = None  # path and conditions of the budget's table
    best_latency_predicted: float | None = None
    best_latency_measured: float | None = None
    scored_with: dict[str, Any] | None = None  # checkpoint weights and split (warm starts)
    warm_start: dict[str, Any] | None = None  # the earlier search and what it lent


@dataclass(frozen=True)
class Finalist:
    """Where ``results.json`` scored an arch on the final split (``source``: ``final[i]`` or
    ``front <name>``)."""

    arch: Arch
    split: str
    score: FinalScore
    source: str
    latency_predicted: float | None = None
    latency_measured: float | None = None


@dataclass
class SearchReport:
    """``results.json``: the result, the command's facts, the final-split scores, the front."""

    result: SearchResult
    facts: RunFacts
    top_k: int
    final: dict[Arch, FinalScore]  # every finalist (top-k and front members) by arch
    front: Front | None = None

    def finalists(self) -> list[EvaluatedArch]:
        """The top-k, best first (``results.json``'s ``final``)."""
        return self.result.top_k(self.top_k)

    def finalist(self, arch: Arch) -> Finalist | None:
        """Where ``arch`` was scored on the final split: among the top-k, else the front."""
        split = self.facts.final_split
        best = self.result.best_arch if rank(self.result.evaluated) else None
        latency = (
            (self.facts.best_latency_predicted, self.facts.best_latency_measured)
            if arch == best
            else (None, None)
        )
        for i, e in enumerate(self.finalists()):
            if e.arch == arch and arch in self.final:
                return Finalist(arch, split, self.final[arch], f"final[{i}]", *latency)
        member = self.front.member(arch) if self.front is not None else None
        if member is not None and member.final_acc1 is not None:
            score = FinalScore(member.final_acc1, float(member.final_acc5 or 0.0))
            return Finalist(arch, split, score, f"front {member.name}", *latency)
        return None

    def to_dict(self) -> dict[str, Any]:
        f, split = self.facts, self.facts.final_split

        def scored(e: EvaluatedArch) -> dict[str, Any]:
            s = self.final[e.arch]
            return {**e.to_dict(), f"{split}_acc1": s.acc1, f"{split}_acc5": s.acc5}

        data = self.result.to_dict(top_k=self.top_k)
        best = None
        if rank(self.result.evaluated):
            best = scored(self.result.best)
            if f.latency_table is not None:
                best["latency_ms_predicted"] = f.best_latency_predicted
                best["latency_ms_measured"] = f.best_latency_measured
        data.update(
            checkpoint=f.checkpoint,
            space=f.space,
            constraints=(
                f.constraints if f.constraints is not None else self.result.constraints.to_dict()
            ),
            fitness_split=f.fitness_split,
            final_split=split,
            best=best,
            final=[scored(e) for e in self.finalists()],
            fitness=f.fitness,
            search_seconds=f.search_seconds,
            eval_throughput_arch_images_per_s=f.eval_throughput,
            archs_per_second=f.archs_per_second,
            compiled_graphs=f.compiled_graphs,
        )
        optional = {
            "latency_table": f.latency_table,
            "scored_with": f.scored_with,
            "warm_start": f.warm_start,
            "front": None if self.front is None else self.front.to_dict(),
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "results.json") -> SearchReport:
        """A ``results.json`` of any version this ovo knows (1 to ``RESULT_VERSION``)."""
        if not isinstance(data, Mapping) or data.get("format") != RESULT_FORMAT:
            raise ConfigError(
                f"{where} is not a search's results.json (written by python -m ovo.search)"
            )
        version = data.get("version")
        if not isinstance(version, int) or not 1 <= version <= RESULT_VERSION:
            raise ConfigError(
                f"{where} has results format version {version}; this ovo reads 1 to "
                f"{RESULT_VERSION} (a newer ovo wrote it?)"
            )
        try:
            recorded = data.get("constraints") or {}
            try:
                result = SearchResult.from_dict(data)
            except ConfigError:
                # a latency budget whose table is not on this machine: the result's Constraints
                # go without it, the budget stays as recorded (facts.constraints)
                latency = ("latency_ms_max", "latency_table", "latency_device", "latency_runtime")
                bare = {k: v for k, v in recorded.items() if k not in latency}
                result = SearchResult.from_dict({**data, "constraints": bare})
            split = str(data.get("final_split", "val"))
            final = {
                Arch.from_dict(e["arch"]): FinalScore(
                    float(e[f"{split}_acc1"]), float(e[f"{split}_acc5"])
                )
                for e in data.get("final", [])
            }
            best = data.get("best") or {}
            facts = RunFacts(
                checkpoint=data.get("checkpoint"),
                space=data.get("space"),
                constraints=dict(recorded),
                fitness_split=data.get("fitness_split"),
                final_split=split,
                fitness=data.get("fitness"),
                search_seconds=data.get("search_seconds"),
                eval_throughput=data.get("eval_throughput_arch_images_per_s"),
                archs_per_second=data.get("archs_per_second"),
                compiled_graphs=data.get("compiled_graphs"),
                latency_table=data.get("latency_table"),
                best_latency_predicted=best.get("latency_ms_predicted"),
                best_latency_measured=best.get("latency_ms_measured"),
                scored_with=data.get("scored_with"),
                warm_start=data.get("warm_start"),
            )
            front = Front.from_dict(data["front"], where) if data.get("front") else None
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"{where} is a damaged results.json ({err!r})") from None
        top_k = max(len(data.get("top_k", [])), len(final))
        return cls(result, facts, top_k, final, front)


def write_results(path: str | Path, report: SearchReport) -> Path:
    """Write ``results.json`` (atomically): the one writer of the file."""
    return atomic_write_json(path, report.to_dict())


def read_results(path: str | Path) -> SearchReport:
    """Read a ``results.json`` (any version from 1 on): the one reader of the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is not a readable results.json: {err}") from None
    return SearchReport.from_dict(data, str(path))


def search_facts(path: str | Path, arch: Arch) -> dict[str, Any]:
    """What a search's ``results.json`` says about ``arch``: its accuracy on the final split
    (if it was among the finalists or on the front), the budget, the supernet, the latency
    prediction. Read through :func:`ovo.search.result.read_results` (any results version)."""
    path = Path(path)
    try:
        report = read_results(path)
    except ConfigError as err:
        raise ConfigError(f"search_result={err}") from None
    found = report.finalist(arch)
    if found is None:
        front = report.front
        nor = f" nor its {len(front.members)} front members" if front is not None else ""
        raise ConfigError(
            f"arch {arch.short()} is not among the {len(report.finalists())} finalists{nor} of "
            f"{path}, which have no inherited accuracy for it; export one of them (e.g. "
            "arch=<search dir>/best_arch.yaml) or score it here with eval_split=val"
        )
    facts: dict[str, Any] = {
        "results": str(path),
        "strategy": report.result.strategy,
        "constraints": report.facts.constraints or report.result.constraints.to_dict(),
        "checkpoint": report.facts.checkpoint,
        "space": report.facts.space,
        "num_evaluated": len(report.result.evaluated),
        "fitness_split": report.facts.fitness_split,
        "accuracy": {
            "split": found.split,
            "acc1": found.score.acc1,
            "acc5": found.score.acc5,
            "source": f"{path}, {found.source}, {found.split} split",
        },
    }
    if found.latency_predicted is not None:
        table = report.facts.latency_table or {}
        facts["latency"] = {
            "predicted_ms": found.latency_predicted,
            "measured_ms": found.latency_measured,
            "conditions": {k: v for k, v in table.items() if k not in ("space", "model")},
            "source": f"{path}, best",
        }
    return facts
