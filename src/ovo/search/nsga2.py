"""NSGA-II over ovo's archs (``strategy=nsga2``): accuracy against one or two costs.

Each generation keeps the best ``population`` of everything scored so far (an elitist archive:
NSGA-II's survival of parents plus offspring, taken over the whole archive so that it is a pure
function of the saved state) in NSGA-II's order: non-dominated rank, then crowding distance
(:func:`ovo.search.moo.survival_order`). It then breeds ``population`` children: two binary
tournaments (lower rank wins, then larger crowding, then the earlier arch) pick two parents, the
child is their uniform crossover (:meth:`SearchSpace.crossover`) mutated by AutoFormer's mutation
(:meth:`SearchSpace.mutate`, ``mutation_prob`` per layer, ``depth_embed_prob`` for depth and
embed), redrawn up to ``child_tries`` times until it is inside the budget box and never scored;
random archs fill what breeding cannot find. Every random choice is the search's saved
``random.Random``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ovo.search.moo import survival_order
from ovo.search.objectives import Objectives
from ovo.search.proposal import ProposalBase
from ovo.space import Arch, SearchSpace

if TYPE_CHECKING:
    from ovo.search.loop import Search, SearchSettings
    from ovo.search.result import EvaluatedArch


@dataclass(frozen=True)
class Parent:
    """A member of the breeding population with its NSGA-II rank and crowding distance."""

    arch: Arch
    rank: int
    crowding: float


def select(points: list[tuple[float, ...]], size: int) -> list[tuple[int, int, float]]:
    """The best ``size`` of ``points`` (minimised objectives) in NSGA-II's order, as
    ``(index, rank, crowding)``."""
    order, ranks, crowding = survival_order(points)
    return [(i, ranks[i], crowding[i]) for i in order[:size]]


def breed(
    parents: list[Parent],
    count: int,
    rng: random.Random,
    space: SearchSpace,
    settings: SearchSettings,
    admissible: Callable[[Arch, set[Arch]], bool],
) -> list[Arch]:
    """Up to ``count`` distinct admissible children of ``parents`` (see the module docstring)."""
    if not parents:
        return []

    def tournament() -> Arch:
        i, j = rng.randrange(len(parents)), rng.randrange(len(parents))
        a, b = parents[i], parents[j]
        return min((a, i), (b, j), key=lambda p: (p[0].rank, -p[0].crowding, p[1]))[0].arch

    children: list[Arch] = []
    taken: set[Arch] = set()
    for _ in range(count):
        for _ in range(settings.child_tries):
            child = space.crossover(tournament(), tournament(), rng)
            child = space.mutate(child, rng, settings.mutation_prob, settings.depth_embed_prob)
            if admissible(child, taken):
                children.append(child)
                taken.add(child)
                break
    return children


def objective_points(
    objectives: Objectives, entries: list[EvaluatedArch]
) -> list[tuple[float, ...]]:
    """The minimised objective values of scored archs (accuracy = their fitness)."""
    return [
        objectives.minimised(objectives.values(e.arch, e.fitness, e.params, e.flops))
        for e in entries
    ]


class NSGA2Proposal(ProposalBase):
    """NSGA-II on the real scores (see the module docstring)."""

    strategy = "nsga2"

    def __init__(self, settings: SearchSettings, objectives: Objectives) -> None:
        self.settings, self.objectives = settings, objectives

    def hyper(self) -> dict[str, Any]:
        s = self.settings
        return {
            "parents": s.parents,
            "mutation_prob": s.mutation_prob,
            "depth_embed_prob": s.depth_embed_prob,
            "child_tries": s.child_tries,
            **self.objectives.hyper(),
        }

    def parents(self, search: Search) -> list[Parent]:
        """The breeding population: the best ``population`` scored archs."""
        entries = search.scored()
        chosen = select(objective_points(self.objectives, entries), self.settings.population)
        return [Parent(entries[i].arch, r, c) for i, r, c in chosen]

    def propose(self, search: Search) -> list[Arch]:
        children = breed(
            self.parents(search),
            self.settings.population,
            search.rng,
            search.space,
            self.settings,
            search.admissible,
        )
        return search.fill_random(children)
