"""AutoFormer's evolutionary search and its random-search baseline, resumable and seeded.

A search owns one ``random.Random(seed)`` that makes every random choice, so a run is a pure
function of its settings and the fitness values. After each generation the whole state (RNG
state included) can be written atomically to ``state_path``; a run restarted with the same
settings continues after the last completed generation and ends with exactly the result an
uninterrupted run gives, without re-evaluating anything.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ovo.errors import ConfigError
from ovo.search.constraints import Constraints, _draw, check_feasible, sample_feasible
from ovo.search.result import EvaluatedArch, GenerationRecord, SearchResult, rank
from ovo.search.state import (
    STATE_FORMAT,
    STATE_VERSION,
    atomic_write_json,
    canonical,
    fingerprint,
    load_state,
    rng_from_json,
    rng_state_to_json,
)
from ovo.space import Arch, SearchSpace
from ovo.supernet.costs import CostModel

Fitness = Callable[[list[Arch]], Sequence[float]]
OnGeneration = Callable[[int, GenerationRecord], None]


def _cost_settings(cost: CostModel) -> dict[str, Any]:
    """The model settings the closed-form costs depend on (not e.g. drop-path)."""
    cfg = cost.cfg
    keys = ("img_size", "patch_size", "in_chans", "num_classes")
    return {**{k: getattr(cfg, k) for k in keys}, "head_dim": cost.head_dim}


class Search:
    """Shared loop: evaluate each generation's new candidates in one batch, record, propose the
    next generation, save state. Subclasses define how candidates are proposed."""

    strategy: ClassVar[str] = ""

    def __init__(
        self,
        space: SearchSpace,
        cost: CostModel,
        constraints: Constraints | None,
        fitness: Fitness,
        *,
        population: int = 50,
        generations: int = 20,
        seed: int = 0,
        state_path: str | Path | None = None,
        on_generation: OnGeneration | None = None,
        max_tries: int = 10_000,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.space = space
        # what the fitness depends on beyond these settings (checkpoint, data split): part of
        # the fingerprint, so a state written for another evaluator is not resumed
        self.context = dict(context or {})
        self.cost = cost
        self.constraints = constraints if constraints is not None else Constraints()
        self.fitness = fitness
        self.population = int(population)
        self.generations = int(generations)
        self.seed = int(seed)
        self.state_path = Path(state_path) if state_path is not None else None
        self.on_generation = on_generation
        self.max_tries = int(max_tries)
        for name in ("population", "generations", "max_tries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"search {name} must be at least 1, got {getattr(self, name)}")
        self._reset()

    # ---- settings --------------------------------------------------------------------------
    def _hyper(self) -> dict[str, Any]:
        """Strategy-specific hyper-parameters (part of the resume fingerprint)."""
        return {}

    @property
    def top_k_size(self) -> int:
        """The k of the per-generation ``mean_top_k``."""
        return 10

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that decides the trajectory; a state file must match it to be resumed."""
        return canonical(
            {
                "strategy": self.strategy,
                "space": self.space.to_dict(),
                "cost": _cost_settings(self.cost),
                "constraints": self.constraints.to_dict(),
                "population": self.population,
                "generations": self.generations,
                "seed": self.seed,
                "max_tries": self.max_tries,
                "context": self.context,
                **self._hyper(),
            }
        )

    # ---- state -----------------------------------------------------------------------------
    def _reset(self) -> None:
        self._rng = random.Random(self.seed)
        self._cache: dict[Arch, EvaluatedArch] = {}
        self._history: list[GenerationRecord] = []
        self._candidates: list[Arch] = []
        self._next_generation = 0

    def _state(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "fingerprint": fingerprint(settings),
            "settings": settings,
            "generation": self._next_generation - 1,  # last completed
            "complete": self._next_generation >= self.generations,
            "rng_state": rng_state_to_json(self._rng),
            "evaluated": [e.to_dict() for e in self._cache.values()],
            "candidates": [a.to_dict() for a in self._candidates],
            "history": [r.to_dict() for r in self._history],
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self._rng = rng_from_json(state["rng_state"])
        evaluated = [EvaluatedArch.from_dict(e) for e in state["evaluated"]]
        self._cache = {e.arch: e for e in evaluated}
        self._history = [GenerationRecord.from_dict(r) for r in state["history"]]
        self._candidates = [Arch.from_dict(a) for a in state["candidates"]]
        self._next_generation = int(state["generation"]) + 1

    # ---- helpers ---------------------------------------------------------------------------
    def _admissible(self, arch: Arch, taken: set[Arch]) -> bool:
        """Within budget, never evaluated, and not already proposed this generation."""
        return (
            arch not in self._cache
            and arch not in taken
            and self.constraints.satisfied(arch, self.cost)
        )

    def _fill_random(self, candidates: list[Arch]) -> list[Arch]:
        """Append new feasible uniform random archs until ``population`` (fewer if the budget
        leaves too few new archs to find in ``max_tries`` draws)."""
        taken = set(candidates)
        while len(candidates) < self.population:
            arch = _draw(
                self.space, self._rng, lambda a: self._admissible(a, taken), self.max_tries
            )
            if arch is None:
                break
            candidates.append(arch)
            taken.add(arch)
        return candidates

    def _first_candidates(self) -> list[Arch]:
        # The first draw raises a clear error if the budget is too narrow to sample at all.
        first = sample_feasible(self.space, self.cost, self.constraints, self._rng, self.max_tries)
        return self._fill_random([first])

    def _next_candidates(self) -> list[Arch]:
        raise NotImplementedError

    def _evaluate(self, candidates: list[Arch], generation: int) -> list[EvaluatedArch]:
        """One fitness call on the candidates not evaluated yet; returns the new evaluations."""
        new = [
            a
            for a in dict.fromkeys(candidates)
            if a not in self._cache and self.constraints.satisfied(a, self.cost)
        ]
        if not new:
            return []
        scores = list(self.fitness(list(new)))
        if len(scores) != len(new):
            raise ValueError(f"fitness returned {len(scores)} scores for {len(new)} archs")
        out = []
        for arch, score in zip(new, scores):
            value = float(score)
            if not math.isfinite(value):
                raise ValueError(f"fitness of {arch.short()} is {value}; it must be finite")
            entry = EvaluatedArch(
                arch, value, self.cost.params(arch), self.cost.macs(arch), generation
            )
            self._cache[arch] = entry
            out.append(entry)
        return out

    def _record(self, generation: int, new: list[EvaluatedArch]) -> GenerationRecord:
        ranked = rank(list(self._cache.values()))
        top = ranked[: self.top_k_size]
        return GenerationRecord(
            generation=generation,
            num_new=len(new),
            num_evaluated=len(ranked),
            best=ranked[0],
            top_k=self.top_k_size,
            mean_top_k=sum(e.fitness for e in top) / len(top),
            new_best_fitness=max(e.fitness for e in new) if new else None,
            new_mean_fitness=sum(e.fitness for e in new) / len(new) if new else None,
        )

    # ---- public ----------------------------------------------------------------------------
    def result(self) -> SearchResult:
        """The result so far (complete once all generations have run)."""
        return SearchResult(
            strategy=self.strategy,
            evaluated=list(self._cache.values()),
            history=list(self._history),
            constraints=self.constraints,
            settings=self.settings,
            complete=self._next_generation >= self.generations,
        )

    def run(self) -> SearchResult:
        """Run (or resume from ``state_path``) to the last generation and return the result.

        The budget is checked before any evaluation; ``on_generation`` is called after each
        generation that this call runs, once its state is saved.
        """
        check_feasible(self.space, self.cost, self.constraints, seed=self.seed)
        self._reset()
        if self.state_path is not None and self.state_path.exists():
            self._restore(load_state(self.state_path, self.settings))
        else:
            self._candidates = self._first_candidates()
        for generation in range(self._next_generation, self.generations):
            new = self._evaluate(self._candidates, generation)
            if not self._cache:
                raise ValueError("the first generation evaluated no arch")
            record = self._record(generation, new)
            self._history.append(record)
            self._next_generation = generation + 1
            last = self._next_generation >= self.generations
            self._candidates = [] if last else self._next_candidates()
            if self.state_path is not None:
                atomic_write_json(self.state_path, self._state())
            if self.on_generation is not None:
                self.on_generation(generation, record)
        return self.result()


class EvolutionSearch(Search):
    """AutoFormer's evolution: keep the top ``parents`` of everything evaluated, propose
    ``mutations`` mutants and ``crossovers`` crossovers of them, fill up with random archs."""

    strategy = "evolution"

    def __init__(
        self,
        space: SearchSpace,
        cost: CostModel,
        constraints: Constraints | None,
        fitness: Fitness,
        *,
        population: int = 50,
        generations: int = 20,
        parents: int = 10,
        mutations: int = 25,
        crossovers: int = 25,
        mutation_prob: float = 0.2,
        depth_embed_prob: float = 0.4,
        child_tries: int = 50,
        seed: int = 0,
        state_path: str | Path | None = None,
        on_generation: OnGeneration | None = None,
        max_tries: int = 10_000,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.parents = int(parents)
        self.mutations = int(mutations)
        self.crossovers = int(crossovers)
        self.mutation_prob = float(mutation_prob)
        self.depth_embed_prob = float(depth_embed_prob)
        self.child_tries = int(child_tries)
        if not 1 <= self.parents <= population:
            raise ConfigError(f"parents must be in [1, population={population}], got {parents}")
        if self.mutations < 0 or self.crossovers < 0:
            raise ConfigError("mutations and crossovers must be non-negative")
        if self.mutations + self.crossovers > population:
            # Otherwise a generation would evaluate more than `population` archs.
            raise ConfigError(
                f"mutations + crossovers = {self.mutations + self.crossovers} exceeds "
                f"population={population}"
            )
        for name in ("mutation_prob", "depth_embed_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.child_tries < 1:
            raise ConfigError(f"child_tries must be at least 1, got {child_tries}")
        super().__init__(
            space,
            cost,
            constraints,
            fitness,
            population=population,
            generations=generations,
            seed=seed,
            state_path=state_path,
            on_generation=on_generation,
            max_tries=max_tries,
            context=context,
        )

    @property
    def top_k_size(self) -> int:
        return self.parents

    def _hyper(self) -> dict[str, Any]:
        return {
            "parents": self.parents,
            "mutations": self.mutations,
            "crossovers": self.crossovers,
            "mutation_prob": self.mutation_prob,
            "depth_embed_prob": self.depth_embed_prob,
            "child_tries": self.child_tries,
        }

    def _next_candidates(self) -> list[Arch]:
        rng = self._rng
        parents = [e.arch for e in rank(list(self._cache.values()))[: self.parents]]
        children: list[Arch] = []
        taken: set[Arch] = set()

        def propose(make: Callable[[], Arch], count: int) -> None:
            # Each child is redrawn (fresh parents each try) until admissible; a child that
            # cannot be found in `child_tries` is left to the random fill.
            for _ in range(count):
                for _ in range(self.child_tries):
                    child = make()
                    if self._admissible(child, taken):
                        children.append(child)
                        taken.add(child)
                        break

        def mutant() -> Arch:
            return self.space.mutate(
                rng.choice(parents), rng, self.mutation_prob, self.depth_embed_prob
            )

        def crossover() -> Arch:
            a, b = rng.sample(parents, 2) if len(parents) > 1 else (parents[0], parents[0])
            return self.space.crossover(a, b, rng)

        propose(mutant, self.mutations)
        propose(crossover, self.crossovers)
        return self._fill_random(children)


class RandomSearch(Search):
    """Baseline with the same evaluation budget: ``population`` new feasible uniform random archs
    per generation (``population * generations`` at most), logged like the evolution."""

    strategy = "random"

    def __init__(
        self,
        space: SearchSpace,
        cost: CostModel,
        constraints: Constraints | None,
        fitness: Fitness,
        *,
        population: int = 50,
        generations: int = 20,
        top_k: int = 10,
        seed: int = 0,
        state_path: str | Path | None = None,
        on_generation: OnGeneration | None = None,
        max_tries: int = 10_000,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.top_k = int(top_k)
        if self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        super().__init__(
            space,
            cost,
            constraints,
            fitness,
            population=population,
            generations=generations,
            seed=seed,
            state_path=state_path,
            on_generation=on_generation,
            max_tries=max_tries,
            context=context,
        )

    @property
    def top_k_size(self) -> int:
        return self.top_k

    def _hyper(self) -> dict[str, Any]:
        return {"top_k": self.top_k}

    def _next_candidates(self) -> list[Arch]:
        return self._fill_random([])


STRATEGIES: dict[str, type[Search]] = {"evolution": EvolutionSearch, "random": RandomSearch}
_EVOLUTION_ONLY = (
    "parents",
    "mutations",
    "crossovers",
    "mutation_prob",
    "depth_embed_prob",
    "child_tries",
)


def make_search(
    strategy: str,
    space: SearchSpace,
    cost: CostModel,
    constraints: Constraints | None,
    fitness: Fitness,
    **kwargs: Any,
) -> Search:
    """Build a search by name from one set of settings: for ``'random'`` the evolution-only
    settings are dropped and ``top_k`` defaults to ``parents`` so both log the same statistic."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown search strategy '{strategy}'; known: {sorted(STRATEGIES)}")
    if strategy == "random":
        if "parents" in kwargs:
            kwargs.setdefault("top_k", kwargs["parents"])
        kwargs = {k: v for k, v in kwargs.items() if k not in _EVOLUTION_ONLY}
    return STRATEGIES[strategy](space, cost, constraints, fitness, **kwargs)
