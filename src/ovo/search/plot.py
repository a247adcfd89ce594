"""The Pareto plot of a search: accuracy vs params and vs FLOPs of every evaluated arch."""

from __future__ import annotations

from pathlib import Path

from ovo.atomic import atomic_path
from ovo.search.result import SearchResult
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
