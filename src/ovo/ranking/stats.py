"""Rank-agreement statistics of a supernet: do inherited accuracies order subnets the way
standalone training does? Pure functions of paired scores (numpy arrays in, floats out), used by ``ovo.rank``.
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
    out = []
    for members in _bins(sizes, bins):
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


# ---- the free baselines and the report ---------------------------------------------------------
BASELINES = ("params", "macs", "depth")  # rankings that cost nothing (no training, no supernet)
VERDICTS = ("beats", "loses to", "not resolved against", "undefined against")


def baseline_scores(rows: Sequence[dict]) -> dict[str, list[float]]:
    """The free rankings of ``rows`` (each with ``params``, ``macs``, ``depth``): larger is
    predicted better. ``depth`` breaks its ties by params (lexicographic: params / (10 x the
    largest) stays below one depth step)."""
    params = [float(r["params"]) for r in rows]
    top = 10 * max(params, default=1.0) or 1.0
    return {
        "params": params,
        "macs": [float(r["macs"]) for r in rows],
        "depth": [float(r["depth"]) + p / top for r, p in zip(rows, params)],
    }


def resample_indices(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """``resamples`` x ``n`` indices drawn with replacement (seeded): the archs of each bootstrap
    resample, shared by every ranking compared on them (a paired bootstrap)."""
    return np.random.default_rng(seed).integers(0, n, (resamples, n)) if n else np.empty((0, 0))


def paired_tau_gain(
    x: Sequence[float],
    base: Sequence[float],
    truth: Sequence[float],
    picks: np.ndarray,
    level: float = 0.95,
) -> tuple[float, tuple[float, float]]:
    """tau(x, truth) - tau(base, truth) and its percentile bootstrap interval over the resampled
    archs ``picks`` (the same resample for both rankings); resamples where either tau is
    undefined are left out."""
    a, b, t = (np.asarray(v, dtype=float) for v in (x, base, truth))
    gain = kendall_tau_b(a, t) - kendall_tau_b(b, t)
    values = []
    for pick in picks:
        value = kendall_tau_b(a[pick], t[pick]) - kendall_tau_b(b[pick], t[pick])
        if not math.isnan(value):
            values.append(value)
    if not values:
        return gain, (math.nan, math.nan)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return gain, (float(lo), float(hi))


def verdict(ci: tuple[float, float]) -> str:
    """Whether the supernet beats a baseline: its tau gain's interval above 0, below 0, or
    neither (not resolved); undefined without an interval."""
    lo, hi = ci
    if math.isnan(lo) or math.isnan(hi):  # too few archs, or ties everywhere
        return VERDICTS[3]
    if lo > 0:
        return VERDICTS[0]
    if hi < 0:
        return VERDICTS[1]
    return VERDICTS[2]


def compare_baselines(
    rows: Sequence[dict],
    members: Sequence[int],
    *,
    score: str = "inherited_acc1",
    truth: str = "standalone_acc1",
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, object]:
    """tau/rho of the supernet (``score``) and of every free ranking against ``truth`` over the
    rows ``members``, and the paired bootstrap of tau(supernet) - tau(baseline)."""
    picked = [rows[i] for i in members]
    t = [float(r[truth]) for r in picked]
    x = [float(r[score]) for r in picked]
    picks = resample_indices(len(picked), resamples, seed)
    out: dict[str, object] = {
        "n": len(picked),
        "supernet": {"kendall_tau": kendall_tau_b(x, t), "spearman_rho": spearman_rho(x, t)},
    }
    for name, base in baseline_scores(picked).items():
        gain, ci = paired_tau_gain(x, base, t, picks)
        out[name] = {
            "kendall_tau": kendall_tau_b(base, t),
            "spearman_rho": spearman_rho(base, t),
            "tau_gain": gain,
            "tau_gain_ci95": ci,
            "verdict": verdict(ci),
        }
    return out


def report(
    rows: Sequence[dict],
    *,
    bins: int = 3,
    top_k: int = 3,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, object]:
    """The statistics ``ovo.rank`` reports, from its rows alone (no training): each row has
    ``params``, ``macs``, ``depth``, ``group``, ``inherited_acc1``, ``standalone_acc1`` (the mean
    over seeds: the truth), ``standalone_acc1_per_seed`` and optionally ``finetuned_acc1`` and
    ``standalone_wall_s``. Agreement overall, per params bin and per arch group (groups of 2+),
    the free baselines beside each, the noise ceiling with 2+ seeds, the finetune summary."""
    stats = dict(bins=bins, top_k=top_k, resamples=resamples, seed=seed)
    sizes = [r["params"] for r in rows]
    inh = [r["inherited_acc1"] for r in rows]
    std = [r["standalone_acc1"] for r in rows]
    every = list(range(len(rows)))
    cmp = dict(resamples=resamples, seed=seed)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["group"], []).append(i)
    groups = {g: m for g, m in groups.items() if len(m) >= 2}
    by_bin = [
        {**{k: v for k, v in b.items() if k != "tau"}, **compare_baselines(rows, list(m), **cmp)}
        for b, m in zip(binned_tau(sizes, inh, std, bins), _bins(sizes, bins))
    ]
    summary: dict[str, object] = {
        "inherited_vs_standalone": summarize(sizes, inh, std, **stats),
        "by_group": {
            g: summarize(*([v[i] for i in m] for v in (sizes, inh, std)), **stats)
            for g, m in groups.items()
        },
        "baselines": {
            "overall": compare_baselines(rows, every, **cmp),
            "by_params_bin": by_bin,
            "by_group": {g: compare_baselines(rows, m, **cmp) for g, m in groups.items()},
        },
    }
    per_seed = [r["standalone_acc1_per_seed"] for r in rows]
    if rows and min(len(s) for s in per_seed) >= 2:  # one seed against another: the ceiling
        first, second = [s[0] for s in per_seed], [s[1] for s in per_seed]
        summary["noise_ceiling"] = {
            "kendall_tau_seed0_vs_seed1": kendall_tau_b(first, second),
            "kendall_tau_ci95": bootstrap_ci(first, second, kendall_tau_b, resamples, seed=seed),
            "mean_abs_seed_difference": float(np.mean(np.abs(np.subtract(first, second)))),
        }
    if rows and all("finetuned_acc1" in r for r in rows):
        tuned = [r["finetuned_acc1"] for r in rows]
        summary["finetuned_vs_standalone"] = summarize(sizes, tuned, std, **stats)
        summary["finetune"] = {
            "gain_mean": float(np.mean([r["finetune_gain"] for r in rows])),
            "remaining_gap_mean": float(np.mean(np.subtract(std, tuned))),
        }
    walls = [w for r in rows for w in r.get("standalone_wall_s", []) if w is not None]
    summary["standalone_wall_s_mean"] = float(np.mean(walls)) if walls else None
    return summary


def _bins(sizes: Sequence[float], bins: int) -> list[np.ndarray]:
    """The members of :func:`binned_tau`'s bins (the same split)."""
    order = np.argsort(np.asarray(sizes, dtype=float), kind="stable")
    parts = np.array_split(order, max(1, min(bins, len(sizes))))
    return [p for p in parts if len(p)]


def json_safe(obj: object) -> object:
    """``obj`` with every NaN (an undefined statistic) as ``None``, for strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.floating | np.integer):
        return json_safe(obj.item())
    return obj
