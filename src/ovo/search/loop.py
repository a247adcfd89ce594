"""The search loop (AutoFormer's protocol), its settings, and the pluggable ways to propose archs.

One :class:`Search` runs every strategy: score each generation's new candidates in one batch,
record, ask the strategy's :class:`Proposal` for the next generation, save the state. A search
owns one ``random.Random(seed)`` that makes every random choice, so a run is a pure function of
its settings and the fitness values. After each generation the whole state (RNG state included)
is written atomically to ``state_path``; a run restarted with the same settings continues after
the last completed generation and ends with exactly the result an uninterrupted run gives,
without re-evaluating anything.

Strategies (``strategy=``):

- ``evolution``: keep the top ``parents`` of everything evaluated, propose ``mutations``
  mutants and ``crossovers`` crossovers of them, fill up with random archs.
- ``random``: ``population`` new uniform archs per generation (the same evaluation budget); its
  per-generation ``mean_top_k`` is over the same ``parents`` best, so both log one statistic.
- ``nsga2``: NSGA-II on accuracy against the costs of ``objectives`` (:mod:`ovo.search.nsga2`).
- ``linas``: NSGA-II on a predictor of accuracy, real scores in batches (:mod:`ovo.search.linas`).

Every strategy keeps the budget box (``constraints``) on every candidate, and every one can
start warm: ``warm`` archs scored by an earlier search of the same checkpoint and split enter the
archive before generation 0 (marked ``reused``, generation -1) and are never scored again; they
replace as many of generation 0's random archs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ovo.budget import Constraints, check_feasible, draw_accepted, sample_feasible
from ovo.errors import ConfigError
from ovo.search.fitness import FullFitness, Race
from ovo.search.front import write_evaluations
from ovo.search.linas import LinasProposal, LinasSettings
from ovo.search.nsga2 import NSGA2Proposal
from ovo.search.objectives import Objectives
from ovo.search.proposal import Proposal, ProposalBase
from ovo.search.result import EvaluatedArch, GenerationRecord, SearchResult, rank
from ovo.search.state import (
    STATE_FORMAT,
    STATE_VERSION,
    canonical,
    fingerprint,
    load_state,
    rng_from_json,
    rng_state_to_json,
    save_state,
)
from ovo.settings import settings_from
from ovo.space import Arch, SearchSpace
from ovo.supernet.config import SHAPE_KEYS
from ovo.supernet.costs import CostModel

Fitness = Callable[[list[Arch]], Sequence[float]]
MULTI_OBJECTIVE = ("nsga2", "linas")  # strategies that search a front of ``objectives``
OnGeneration = Callable[[int, GenerationRecord, list[EvaluatedArch]], None]


@dataclass(frozen=True)
class SearchSettings:
    """The search's own settings: the top-level keys of ``conf/search.yaml`` (AutoFormer's
    defaults), shared by the YAML, the loop, the strategies and ``results.json``."""

    strategy: Literal["evolution", "random", "nsga2", "linas"] = "evolution"
    fitness: Literal["full", "halving"] = "full"
    seed: int = 0
    population: int = 50
    generations: int = 20
    parents: int = 10
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.2
    depth_embed_prob: float = 0.4
    child_tries: int = 50
    max_tries: int = 10_000

    def __post_init__(self) -> None:
        for name in ("population", "generations", "child_tries", "max_tries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        if not 1 <= self.parents <= self.population:
            raise ConfigError(
                f"parents={self.parents} must be in [1, population={self.population}]"
            )
        if self.strategy in MULTI_OBJECTIVE and self.fitness == "halving":
            raise ConfigError(
                f"fitness=halving races candidates on accuracy alone, which would cut a "
                f"strategy={self.strategy} front on one objective; use fitness=full"
            )
        if self.strategy != "evolution":
            self._check_probs()
            return  # the rest are evolution's own
        if self.mutations < 0 or self.crossovers < 0:
            raise ConfigError("mutations and crossovers must be non-negative")
        if self.mutations + self.crossovers > self.population:
            # Otherwise a generation would evaluate more than `population` archs.
            raise ConfigError(
                f"mutations + crossovers = {self.mutations + self.crossovers} exceeds "
                f"population={self.population}"
            )
        self._check_probs()

    def _check_probs(self) -> None:
        for name in ("mutation_prob", "depth_embed_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1]")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SearchSettings:
        """The search settings among a command config's top-level keys."""
        names = cls.__dataclass_fields__
        return settings_from(cls, {k: v for k, v in cfg.items() if k in names}, "")


def _cost_settings(cost: CostModel) -> dict[str, Any]:
    """The model settings the closed-form costs depend on (not e.g. drop-path)."""
    return {**{k: getattr(cost.cfg, k) for k in SHAPE_KEYS}, "head_dim": cost.head_dim}


class RandomProposal(ProposalBase):
    """``population`` new feasible uniform random archs."""

    strategy = "random"

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings

    def hyper(self) -> dict[str, Any]:
        return {"top_k": self.settings.parents}

    def propose(self, search: Search) -> list[Arch]:
        return search.fill_random([])


class EvolutionProposal(ProposalBase):
    """AutoFormer's evolution: mutants and crossovers of the top ``parents``, random fill."""

    strategy = "evolution"

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings

    def hyper(self) -> dict[str, Any]:
        s = self.settings
        return {
            "parents": s.parents,
            "mutations": s.mutations,
            "crossovers": s.crossovers,
            "mutation_prob": s.mutation_prob,
            "depth_embed_prob": s.depth_embed_prob,
            "child_tries": s.child_tries,
        }

    def propose(self, search: Search) -> list[Arch]:
        s, rng, space = self.settings, search.rng, search.space
        parents = [e.arch for e in search.ranked()[: s.parents]]
        children: list[Arch] = []
        taken: set[Arch] = set()

        def add(make: Callable[[], Arch], count: int) -> None:
            # Each child is redrawn (fresh parents each try) until admissible; a child that
            # cannot be found in `child_tries` is left to the random fill.
            for _ in range(count):
                for _ in range(s.child_tries):
                    child = make()
                    if search.admissible(child, taken):
                        children.append(child)
                        taken.add(child)
                        break

        def mutant() -> Arch:
            return space.mutate(rng.choice(parents), rng, s.mutation_prob, s.depth_embed_prob)

        def crossover() -> Arch:
            a, b = rng.sample(parents, 2) if len(parents) > 1 else (parents[0], parents[0])
            return space.crossover(a, b, rng)

        add(mutant, s.mutations)
        add(crossover, s.crossovers)
        return search.fill_random(children)


# the single-objective strategies (their proposals take the settings alone)
PROPOSALS: dict[str, Callable[[SearchSettings], Proposal]] = {
    "evolution": EvolutionProposal,
    "random": RandomProposal,
}


def make_proposal(
    settings: SearchSettings, objectives: Objectives, linas: LinasSettings
) -> Proposal:
    """The proposal of ``settings.strategy``."""
    if settings.strategy == "nsga2":
        return NSGA2Proposal(settings, objectives)
    if settings.strategy == "linas":
        return LinasProposal(settings, objectives, linas)
    return PROPOSALS[settings.strategy](settings)


class Search:
    """The loop shared by every strategy (see the module docstring).

    Args:
        space, cost, constraints: what may be proposed (closed-form budgets).
        fitness: scores a list of new archs in one call (higher is better), on the whole
            fitness split; or a :class:`~ovo.search.fitness.Race` (successive halving).
        settings: :class:`SearchSettings`; ``settings.strategy`` picks the proposal.
        state_path: where the state is saved after every generation (and resumed from).
        context: what the fitness depends on beyond these settings (checkpoint, data split): part
            of the resume fingerprint, so a state written for another evaluator is not resumed.
        on_generation: called after each generation this run completes, once its state is
            saved, with (generation, record, the generation's new evaluations).
        budget_checked: the caller has already run :func:`check_feasible` on these space,
            costs and constraints (the search command does, before loading any data), so
            :meth:`run` does not run it again.
        objectives: what ``nsga2`` and ``linas`` trade off (:class:`Objectives`; default
            accuracy against params); the other strategies ignore it.
        linas: :class:`~ovo.search.linas.LinasSettings` of ``strategy=linas``.
        warm: scores of an earlier search of the same checkpoint and split (see the module
            docstring); the caller checks that they are (:mod:`ovo.search.warm`).
        scored_with: what the scores were measured with (checkpoint weights, split): saved in
            the state (not in the fingerprint) so a later search can start warm from it.
        evaluations_path: ``evaluations.jsonl``, rewritten whole and atomically from the state
            whenever the state is saved (and when a run starts or resumes), so after a kill and a
            resume it holds every evaluation of the state exactly once.
    """

    def __init__(
        self,
        space: SearchSpace,
        cost: CostModel,
        constraints: Constraints | None,
        fitness: Fitness | Race,
        settings: SearchSettings | None = None,
        *,
        state_path: str | Path | None = None,
        context: Mapping[str, Any] | None = None,
        on_generation: OnGeneration | None = None,
        budget_checked: bool = False,
        objectives: Objectives | None = None,
        linas: LinasSettings | None = None,
        warm: Sequence[EvaluatedArch] = (),
        scored_with: Mapping[str, Any] | None = None,
        evaluations_path: str | Path | None = None,
    ) -> None:
        self.space, self.cost = space, cost
        self.fitness: Race = fitness if hasattr(fitness, "race") else FullFitness(fitness)
        self.constraints = constraints if constraints is not None else Constraints()
        self.config = settings if settings is not None else SearchSettings()
        self.objectives = objectives if objectives is not None else Objectives()
        self.linas = linas if linas is not None else LinasSettings()
        self.proposal = make_proposal(self.config, self.objectives, self.linas)
        self.state_path = Path(state_path) if state_path is not None else None
        self.context = dict(context or {})
        self.on_generation = on_generation
        self.budget_checked = budget_checked
        # an earlier search's complete scores, as this search's reused entries
        self.warm = [
            replace(e, generation=-1, reused=True) for e in dict.fromkeys(warm) if e.complete
        ]
        self.scored_with = dict(scored_with) if scored_with is not None else None
        self.evaluations_path = Path(evaluations_path) if evaluations_path is not None else None
        self._reset()

    @property
    def top_k_size(self) -> int:
        """The k of the per-generation ``mean_top_k``."""
        return self.config.parents

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that decides the trajectory; a state file must match it to be resumed."""
        c = self.config
        settings = {
            "strategy": c.strategy,
            "space": self.space.to_dict(),
            "cost": _cost_settings(self.cost),
            "constraints": self.constraints.to_dict(),
            "population": c.population,
            "generations": c.generations,
            "seed": c.seed,
            "max_tries": c.max_tries,
            "context": self.context,
            "fitness": self.fitness.settings(),
            **self.proposal.hyper(),
        }
        if self.warm:  # absent without one: states of searches before warm starts still resume
            settings["warm_start"] = {
                "entries": len(self.warm),
                "fingerprint": fingerprint({"warm": [e.to_dict() for e in self.warm]}),
            }
        return canonical(settings)

    # ---- state -----------------------------------------------------------------------------
    def _reset(self) -> None:
        self.rng = random.Random(self.config.seed)
        self._cache: dict[Arch, EvaluatedArch] = {}
        self._history: list[GenerationRecord] = []
        self._candidates: list[Arch] = []
        self._next_generation = 0
        self.proposal.restore(None)

    def _state(self) -> dict[str, Any]:
        settings = self.settings
        state = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "fingerprint": fingerprint(settings),
            "settings": settings,
            "generation": self._next_generation - 1,  # last completed
            "complete": self._complete,
            "rng_state": rng_state_to_json(self.rng),
            "evaluated": [e.to_dict() for e in self._cache.values()],
            "candidates": [a.to_dict() for a in self._candidates],
            "history": [r.to_dict() for r in self._history],
        }
        proposal = self.proposal.state()
        if proposal is not None:
            state["proposal"] = proposal
        if self.scored_with is not None:
            state["scored_with"] = self.scored_with
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        self.rng = rng_from_json(state["rng_state"])
        evaluated = [EvaluatedArch.from_dict(e) for e in state["evaluated"]]
        full = getattr(self.fitness, "images", 0)
        # format 1 did not count images: every arch then took the whole split
        evaluated = [
            replace(e, images=full) if not e.images and not e.reused else e for e in evaluated
        ]
        self._cache = {e.arch: e for e in evaluated}
        self._history = [GenerationRecord.from_dict(r) for r in state["history"]]
        self._candidates = [Arch.from_dict(a) for a in state["candidates"]]
        self._next_generation = int(state["generation"]) + 1
        self.proposal.restore(state.get("proposal"))

    def _save(self) -> None:
        if self.state_path is not None:
            save_state(self.state_path, self._state())
        self._write_evaluations()

    def _write_evaluations(self) -> None:
        if self.evaluations_path is not None:
            write_evaluations(self.evaluations_path, list(self._cache.values()), self.objectives)

    @property
    def _complete(self) -> bool:
        return self._next_generation >= self.config.generations

    # ---- what proposals use ----------------------------------------------------------------
    @property
    def next_generation(self) -> int:
        """The generation to be scored next (the one being proposed, inside ``propose``)."""
        return self._next_generation

    @property
    def archived(self) -> Mapping[Arch, EvaluatedArch]:
        """Everything evaluated so far (reused warm scores included), by arch."""
        return MappingProxyType(self._cache)

    def scored(self) -> list[EvaluatedArch]:
        """The archs scored on the whole split, in evaluation order."""
        return [e for e in self._cache.values() if e.complete]

    def ranked(self) -> list[EvaluatedArch]:
        """Everything evaluated so far, best first."""
        return rank(list(self._cache.values()))

    def admissible(self, arch: Arch, taken: set[Arch]) -> bool:
        """Within budget, never evaluated, and not already proposed this generation."""
        return (
            arch not in self._cache
            and arch not in taken
            and self.constraints.satisfied(arch, self.cost)
        )

    def fill_random(self, candidates: list[Arch], target: int | None = None) -> list[Arch]:
        """Append new feasible uniform random archs until ``target`` (default ``population``;
        fewer if the budget leaves too few new archs to find in ``max_tries`` draws)."""
        target = self.config.population if target is None else target
        taken = set(candidates)
        while len(candidates) < target:
            arch = draw_accepted(
                self.space, self.rng, lambda a: self.admissible(a, taken), self.config.max_tries
            )
            if arch is None:
                break
            candidates.append(arch)
            taken.add(arch)
        return candidates

    # ---- the loop --------------------------------------------------------------------------
    def _first_candidates(self) -> list[Arch]:
        size = self.proposal.initial_size(self)
        if self._cache:  # warm: the reused scores stand in for as many random archs
            return self.fill_random([], target=size - len(self._cache))
        # The first draw raises a clear error if the budget is too narrow to sample at all.
        first = sample_feasible(
            self.space, self.cost, self.constraints, self.rng, self.config.max_tries
        )
        return self.fill_random([first], target=size)

    def _add_warm(self) -> None:
        """The warm scores inside this search's space and budget box enter the archive."""
        for e in self.warm:
            if e.arch in self.space and self.constraints.satisfied(e.arch, self.cost):
                self._cache.setdefault(e.arch, e)

    def _threshold(self) -> float | None:
        """The fitness an arch must reach to enter the current top-k (k = ``parents``), or
        ``None`` while fewer than k archs are scored on the whole split."""
        ranked = self.ranked()
        k = self.top_k_size
        return ranked[k - 1].fitness if len(ranked) >= k else None

    def _evaluate(self, candidates: list[Arch], generation: int) -> list[EvaluatedArch]:
        """One race of the candidates not evaluated yet; returns the new evaluations."""
        new = [
            a
            for a in dict.fromkeys(candidates)
            if a not in self._cache and self.constraints.satisfied(a, self.cost)
        ]
        if not new:
            return []
        scored = self.fitness.race(list(new), self._threshold())
        out = []
        for arch, score in zip(new, scored):
            if not math.isfinite(score.fitness):
                raise ValueError(f"fitness of {arch.short()} is {score.fitness}; it must be finite")
            entry = EvaluatedArch(
                arch,
                score.fitness,
                self.cost.params(arch),
                self.cost.macs(arch),
                generation,
                score.images,
                score.complete,
            )
            self._cache[arch] = entry
            out.append(entry)
        return out

    def _record(self, generation: int, new: list[EvaluatedArch]) -> GenerationRecord:
        ranked = self.ranked()
        top = ranked[: self.top_k_size]
        complete = [e for e in new if e.complete]
        return GenerationRecord(
            generation=generation,
            num_new=len(new),
            num_evaluated=len(self._cache),
            best=ranked[0],
            top_k=self.top_k_size,
            mean_top_k=sum(e.fitness for e in top) / len(top),
            new_best_fitness=max(e.fitness for e in complete) if complete else None,
            new_mean_fitness=sum(e.fitness for e in complete) / len(complete) if complete else None,
        )

    def result(self) -> SearchResult:
        """The result so far (complete once all generations have run)."""
        return SearchResult(
            strategy=self.config.strategy,
            evaluated=list(self._cache.values()),
            history=list(self._history),
            constraints=self.constraints,
            settings=self.settings,
            complete=self._complete,
            loops=self.proposal.log(),
        )

    def run(self) -> SearchResult:
        """Run (or resume from ``state_path``) to the last generation and return the result.

        The budget is checked before any evaluation (unless the caller did, ``budget_checked``).
        """
        if not self.budget_checked:
            check_feasible(self.space, self.cost, self.constraints, seed=self.config.seed)
        self._reset()
        if self.state_path is not None and self.state_path.exists():
            self._restore(load_state(self.state_path, self.settings))
        else:
            self._add_warm()
            self._candidates = self._first_candidates()
        # a kill between a state save and this file's rewrite is repaired here
        self._write_evaluations()
        for generation in range(self._next_generation, self.config.generations):
            new = self._evaluate(self._candidates, generation)
            if not self.ranked():
                raise ValueError("the first generation scored no arch on the whole split")
            record = self._record(generation, new)
            self._history.append(record)
            self._next_generation = generation + 1
            self.proposal.observe(self, generation, new)
            self._candidates = [] if self._complete else self.proposal.propose(self)
            self._save()
            if self.on_generation is not None:
                self.on_generation(generation, record, new)
        return self.result()
