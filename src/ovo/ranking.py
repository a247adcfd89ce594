"""Rank-agreement statistics of a supernet: do inherited accuracies order subnets the way
standalone training does? Pure functions of paired scores (no torch), used by ``ovo.rank``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Stat = Callable[[np.ndarray, np.ndarray], float]


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either variable corrected for); ``nan`` when undefined (fewer
    than two items, or one variable constant)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} scores: pairs must match")
    if len(a) < 2:
        return math.nan
    i, j = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    concordance = float(np.sum(da * db))
    pairs_a, pairs_b = float(np.sum(da != 0)), float(np.sum(db != 0))
    if pairs_a == 0 or pairs_b == 0:
        return math.nan
    return concordance / math.sqrt(pairs_a * pairs_b)


def _average_ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v), dtype=float)
    ranks[order] = np.arange(1, len(v) + 1)
    for value in np.unique(v):  # ties share their mean rank
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson correlation of average ranks); ``nan`` when undefined."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} scores: pairs must match")
    if len(a) < 2:
        return math.nan
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denom if denom else math.nan


def bootstrap_ci(
    x: Sequence[float],
    y: Sequence[float],
    stat: Stat,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(x, y)`` over resampled pairs (seeded); resamples
    where the statistic is undefined are left out. ``(nan, nan)`` if none is defined."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(a), len(a))
        value = stat(a[pick], b[pick])
        if not math.isnan(value):
            values.append(value)
    if not values:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def top_k_overlap(x: Sequence[float], y: Sequence[float], k: int) -> float:
    """Share of the top-``k`` by ``x`` that is also in the top-``k`` by ``y`` (ties broken by
    position, so the answer is deterministic)."""
    k = min(k, len(x))
    if k < 1:
        return math.nan
    top_x = set(np.argsort(-np.asarray(x, dtype=float), kind="stable")[:k].tolist())
    top_y = set(np.argsort(-np.asarray(y, dtype=float), kind="stable")[:k].tolist())
    return len(top_x & top_y) / k


def binned_tau(
    sizes: Sequence[float], x: Sequence[float], y: Sequence[float], bins: int
) -> list[dict[str, float]]:
    """Kendall's tau-b within ``bins`` groups of (nearly) equal count by ``sizes`` (params):
    whether the ranking holds among subnets of similar size, not only small vs large."""
    s, a, b = (np.asarray(v, dtype=float) for v in (sizes, x, y))
    order = np.argsort(s, kind="stable")
    out = []
    for members in np.array_split(order, max(1, min(bins, len(s)))):
        if len(members) == 0:
            continue
        out.append(
            {
                "params_min": float(s[members].min()),
                "params_max": float(s[members].max()),
                "n": int(len(members)),
                "tau": kendall_tau_b(a[members], b[members]),
            }
        )
    return out


def summarize(
    sizes: Sequence[float],
    inherited: Sequence[float],
    standalone: Sequence[float],
    *,
    bins: int = 3,
    top_k: int = 3,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, object]:
    """Every agreement number ``ovo.rank`` reports for one pair of score lists."""
    gap = np.asarray(standalone, dtype=float) - np.asarray(inherited, dtype=float)
    return {
        "n": len(inherited),
        "kendall_tau": kendall_tau_b(inherited, standalone),
        "kendall_tau_ci95": bootstrap_ci(
            inherited, standalone, kendall_tau_b, resamples, seed=seed
        ),
        "spearman_rho": spearman_rho(inherited, standalone),
        "spearman_rho_ci95": bootstrap_ci(
            inherited, standalone, spearman_rho, resamples, seed=seed
        ),
        "tau_by_params_bin": binned_tau(sizes, inherited, standalone, bins),
        "top_k": top_k,
        "top_k_overlap": top_k_overlap(inherited, standalone, top_k),
        "gap_mean": float(gap.mean()) if len(gap) else math.nan,
        "gap_max": float(gap.max()) if len(gap) else math.nan,
        "gap_min": float(gap.min()) if len(gap) else math.nan,
    }


def json_safe(obj: object) -> object:
    """``obj`` with every NaN (an undefined statistic) as ``None``, for strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj
