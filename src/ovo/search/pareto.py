"""Pareto fronts of fitness (higher is better) against a cost (lower is better)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import groupby
from typing import TypeVar

T = TypeVar("T")


def pareto_front(
    items: Iterable[T], fitness: Callable[[T], float], cost: Callable[[T], float]
) -> list[T]:
    """The items no other item dominates, sorted by increasing cost.

    ``a`` dominates ``b`` when ``fitness(a) >= fitness(b)`` and ``cost(a) <= cost(b)``, one of
    them strictly. Exact ties are kept (neither dominates the other), in input order.
    """
    indexed = sorted(enumerate(items), key=lambda x: (cost(x[1]), -fitness(x[1]), x[0]))
    front: list[T] = []
    best_cheaper = -float("inf")  # best fitness among strictly cheaper items
    for _, group in groupby(indexed, key=lambda x: cost(x[1])):
        members = [item for _, item in group]
        top = fitness(members[0])  # sorted by decreasing fitness within a cost
        if top > best_cheaper:
            front.extend(m for m in members if fitness(m) == top)
            best_cheaper = top
    return front
