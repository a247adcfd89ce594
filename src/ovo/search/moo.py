"""Multi-objective arithmetic of the search: non-dominated sorting, crowding, hypervolume.

Every function takes points as rows of objective values that are all MINIMISED (accuracy enters
negated or as an error), in a fixed order: results are a pure function of that order, so every
DDP rank and every resumed run computes the same fronts.

pymoo (sorting, crowding) and moocore (hypervolume) are imported inside the functions that use
them: ``import ovo.search`` must keep working where they are not installed (the GPU image lacks
them), and only multi-objective searches and front outputs need them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ovo.errors import ConfigError

Points = Sequence[Sequence[float]]


def moo_available() -> bool:
    """Whether pymoo and moocore can be imported here."""
    try:
        import moocore  # noqa: F401  (probe only)
        import pymoo  # noqa: F401
    except ImportError:
        return False
    return True


def require_moo(what: str) -> None:
    """Refuse (one :class:`ConfigError`) ``what`` where pymoo or moocore is missing."""
    if not moo_available():
        raise ConfigError(
            f"{what} needs pymoo and moocore, which this Python lacks; install them "
            "(pip install pymoo moocore) or use strategy=evolution|random"
        )


def _array(points: Points):  # -> np.ndarray of shape (n, m)
    data = np.asarray(points, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"points must be rows of objective values, got shape {data.shape}")
    return data


def nondominated_ranks(points: Points) -> list[int]:
    """The front index of every point (0: not dominated by any point, 1: only by front 0, ...).

    ``a`` dominates ``b`` when it is no worse in every objective and better in one; equal
    points do not dominate each other (they share a front)."""
    if len(points) == 0:
        return []
    # pymoo: inside the function, see the module docstring
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    _, rank = NonDominatedSorting().do(_array(points), return_rank=True)
    return [int(r) for r in rank]


def crowding_distances(points: Points) -> list[float]:
    """NSGA-II's crowding distance of each point of ONE front (pymoo's ``cd``): per objective,
    the gap between a point's two neighbours over the front's range, averaged over objectives;
    the extremes of each objective (and every point of a front of at most two) get ``inf``."""
    n = len(points)
    if n == 0:
        return []
    # pymoo: inside the function, see the module docstring
    from pymoo.operators.survival.rank_and_crowding.metrics import get_crowding_function

    return [float(d) for d in get_crowding_function("cd").do(_array(points))]


def survival_order(points: Points) -> tuple[list[int], list[int], list[float]]:
    """NSGA-II's order of preference: indices by non-dominated rank, then by decreasing
    crowding distance within the front, then by index (deterministic ties).

    Returns ``(order, ranks, crowding)``, ranks and crowding per point in input order."""
    ranks = nondominated_ranks(points)
    crowding = [0.0] * len(points)
    for front in sorted(set(ranks)):
        members = [i for i, r in enumerate(ranks) if r == front]
        for i, d in zip(members, crowding_distances([points[i] for i in members])):
            crowding[i] = d
    order = sorted(range(len(points)), key=lambda i: (ranks[i], -crowding[i], i))
    return order, ranks, crowding


def nondominated(points: Points) -> list[int]:
    """Indices of the points no other point dominates, in input order."""
    return [i for i, r in enumerate(nondominated_ranks(points)) if r == 0]


def hypervolume(points: Points, reference: Sequence[float]) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (minimisation): the
    measure of every ``x`` with ``p <= x <= reference`` for some point ``p``. Points not better
    than the reference in every objective add nothing; no points, 0."""
    inside = [p for p in points if all(v < r for v, r in zip(p, reference))]
    if not inside:
        return 0.0
    # moocore: inside the function, see the module docstring
    import moocore

    return float(moocore.hypervolume(_array(inside), ref=list(reference)))
