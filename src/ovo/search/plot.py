"""The plots of a search: accuracy vs params and vs FLOPs of every evaluated arch
(``pareto.png``), and the front of its objectives in the budget box (``front.png``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ovo.atomic import atomic_path
from ovo.budget import Constraints
from ovo.search.front import Front
from ovo.search.objectives import Objectives
from ovo.search.result import EvaluatedArch, SearchResult
from ovo.units import scale_of


def plot_pareto(result: SearchResult, path: str | Path, title: str = "") -> Path:
    """Accuracy vs params and vs FLOPs of every evaluated arch, with both Pareto fronts."""
    import matplotlib  # here: pyplot costs ~1 s to import and only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    # MACs in G for ImageNet-sized subnets, in M for small ones (CIFAR, nano), never 0.0x G
    prefix, macs_scale = scale_of(max((e.flops for e in result.evaluated), default=0))
    if prefix not in ("G", "T"):
        prefix, macs_scale = "M", 1e6
    for ax, key, unit, scale in (
        (axes[0], "params", "params (M)", 1e6),
        (axes[1], "flops", f"MACs ({prefix})", macs_scale),
    ):
        xs = [getattr(e, key) / scale for e in result.evaluated]
        ys = [e.fitness for e in result.evaluated]
        gens = [e.generation for e in result.evaluated]
        sc = ax.scatter(xs, ys, c=gens, cmap="viridis", s=12, alpha=0.7)
        front = result.pareto(key)
        ax.plot(
            [getattr(e, key) / scale for e in front],
            [e.fitness for e in front],
            "r.-",
            label="Pareto front",
        )
        best = result.best
        ax.scatter(
            [getattr(best, key) / scale], [best.fitness], marker="*", s=200, c="red", label="best"
        )
        ax.set_xlabel(unit)
        ax.set_ylabel("top-1 on search split (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.colorbar(sc, ax=axes, label="generation")
    fig.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def plot_front(
    evaluated: Sequence[EvaluatedArch],
    front: Front,
    objectives: Objectives,
    constraints: Constraints,
    path: str | Path,
    title: str = "",
) -> Path:
    """Accuracy against each cost of ``objectives``: every evaluated arch (by generation; reused
    warm scores in grey), the front's members (named), and the budget box (shaded outside)."""
    import matplotlib  # here: pyplot costs ~1 s to import and only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = objectives.costs
    fig, axes = plt.subplots(
        1, len(costs), figsize=(5.6 * len(costs), 4.4), constrained_layout=True, squeeze=False
    )
    prefix, macs_scale = scale_of(max((e.flops for e in evaluated), default=0))
    if prefix not in ("G", "T"):
        prefix, macs_scale = "M", 1e6
    p_prefix, p_scale = scale_of(max((e.params for e in evaluated), default=0))
    axis = {
        "params": (
            f"params ({p_prefix or 'count'})",
            p_scale,
            constraints.params_min,
            constraints.params_max,
        ),
        "macs": (f"MACs ({prefix})", macs_scale, constraints.flops_min, constraints.flops_max),
        "latency": ("predicted latency (ms)", 1.0, None, constraints.latency_ms_max),
    }
    members = {m.arch for m in front.members}
    sc = None
    for ax, name in zip(axes[0], costs):
        label, scale, lo, hi = axis[name]

        def x(e: EvaluatedArch, name: str = name, scale: float = scale) -> float:
            return objectives.cost_of(name, e.arch, e.params, e.flops) / scale

        own = [e for e in evaluated if e.complete and not e.reused]
        reused = [e for e in evaluated if e.complete and e.reused]
        if reused:
            ax.scatter(
                [x(e) for e in reused], [e.fitness for e in reused], c="0.75", s=10, label="reused"
            )
        sc = ax.scatter(
            [x(e) for e in own],
            [e.fitness for e in own],
            c=[e.generation for e in own],
            cmap="viridis",
            s=12,
            alpha=0.7,
        )
        on = sorted((e for e in evaluated if e.arch in members), key=x)
        style = "r.-" if len(costs) == 1 else "r."  # with two costs a projection is no line
        ax.plot([x(e) for e in on], [e.fitness for e in on], style, ms=9, label="front")
        for m in front.members:
            value = objectives.cost_of(name, m.arch, m.params, m.macs) / scale
            ax.annotate(
                m.name, (value, m.acc), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        left, right = ax.get_xlim()
        spans = []  # the budget box, where it cuts into the plotted range
        if lo is not None and left < float(lo) / scale:
            spans.append((left, float(lo) / scale))
        if hi is not None and float(hi) / scale < right:
            spans.append((float(hi) / scale, right))
        for i, (a, b) in enumerate(spans):
            label = "outside the budget" if i == 0 else "_nolegend_"
            ax.axvspan(a, b, color="0.5", alpha=0.15, lw=0, label=label)
        ax.set_xlim(left, right)
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 on search split (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    if sc is not None:
        fig.colorbar(sc, ax=axes[0].tolist(), label="generation")
    hv = f"hypervolume {front.hypervolume:.4f}"
    fig.suptitle(f"{title}\n{hv}" if title else hv)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
