"""What ``ovo.rank`` shows of its result (:func:`ovo.ranking.stats.report`): the printed table and
lines, ``ranking.png`` and the W&B tables. Reads the result only; computes no statistic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ovo.atomic import atomic_path
from ovo.commands.cli import print_outputs
from ovo.commands.from_checkpoint import open_wandb
from ovo.ranking.stats import BASELINES

GROUP_STYLE = {"band": ("tab:red", "band"), "strat": ("tab:blue", "stratified")}


def publish(cfg: DictConfig, out: Path, result: dict[str, Any], space: str) -> None:
    """The plot, the W&B run and the printed report of a finished ranking."""
    s = result["summary"]["inherited_vs_standalone"]
    plot_ranking(
        result["rows"],
        out / "ranking.png",
        f"'{space}' supernet, {len(result['rows'])} archs on {result['split']}: Kendall tau "
        f"{_num(s['kendall_tau'], '.2f')} [{_num(s['kendall_tau_ci95'][0], '.2f')}, "
        f"{_num(s['kendall_tau_ci95'][1], '.2f')}]",
    )
    _wandb(cfg, out, result)
    print_report(result, out)


def plot_ranking(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Inherited (x) vs standalone (y) accuracy, points sized by params, coloured by arch group;
    finetuned archs too."""
    import matplotlib  # here: pyplot costs ~1 s to import and only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2), constrained_layout=True)
    top = max(r["params"] for r in rows)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["group"] if r["group"] in GROUP_STYLE else "other", []).append(r)
    for group, members in groups.items():
        color, label = GROUP_STYLE.get(group, ("tab:green", "other"))
        ax.scatter(
            [r["inherited_acc1"] for r in members],
            [r["standalone_acc1"] for r in members],
            s=[20 + 180 * r["params"] / top for r in members],
            c=color,
            alpha=0.7,
            label=f"{label}: standalone",
        )
        tuned = [r for r in members if "finetuned_acc1" in r]
        if tuned:
            ax.scatter(
                [r["inherited_acc1"] for r in tuned],
                [r["finetuned_acc1"] for r in tuned],
                s=[20 + 180 * r["params"] / top for r in tuned],
                c=color,
                marker="^",
                alpha=0.5,
                label=f"{label}: finetuned",
            )
    lo = min(min(r["inherited_acc1"], r["standalone_acc1"]) for r in rows) - 1
    hi = max(max(r["inherited_acc1"], r["standalone_acc1"]) for r in rows) + 1
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="standalone = inherited")
    ax.set_xlabel("inherited weights, top-1 (%)")
    ax.set_ylabel("trained alone, top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def baseline_table(summary: dict[str, Any]) -> list[list[Any]]:
    """One row per (set of archs, ranking): tau, rho, and for the free rankings the supernet's
    tau gain over it, its 95% interval and the verdict."""
    b = summary["baselines"]
    sets = [("all", b["overall"])]
    sets += [
        (f"params {_mega(x['params_min'])}-{_mega(x['params_max'])}M", x)
        for x in b["by_params_bin"]
    ]
    sets += [(f"group {g}", x) for g, x in b["by_group"].items()]
    table = []
    for label, x in sets:
        sup = x["supernet"]
        table.append([label, x["n"], "supernet", sup["kendall_tau"], sup["spearman_rho"]])
        table[-1] += [None, None, None, None]
        for name in BASELINES:
            y = x[name]
            lo, hi = y["tau_gain_ci95"]
            table.append([label, x["n"], f"by {name}", y["kendall_tau"], y["spearman_rho"]])
            table[-1] += [y["tau_gain"], lo, hi, y["verdict"]]
    return table


BASELINE_COLUMNS = [
    "archs",
    "n",
    "ranking",
    "tau",
    "rho",
    "tau_gain",
    "tau_gain_lo",
    "tau_gain_hi",
    "verdict",
]


def _mega(value: float) -> str:
    return f"{value / 1e6:.3g}"


def _wandb(cfg: DictConfig, out: Path, result: dict[str, Any]) -> None:
    run = open_wandb(cfg, out, "rank")
    if run is None:
        return
    import wandb  # here: W&B is optional at run time (the lent GPU image has none; NOTES.md)

    columns = ["name", "group", "arch", "params_M", "inherited", "standalone", "gap", "finetuned"]
    table = wandb.Table(columns=columns)
    for r in result["rows"]:
        table.add_data(
            r["name"],
            r["group"],
            r["arch"],
            r["params"] / 1e6,
            r["inherited_acc1"],
            r["standalone_acc1"],
            r["gap"],
            r.get("finetuned_acc1"),
        )
    baselines = wandb.Table(columns=BASELINE_COLUMNS)
    for row in baseline_table(result["summary"]):
        baselines.add_data(*row)
    s = result["summary"]["inherited_vs_standalone"]
    run.log(
        {
            "rank/archs": table,
            "rank/baselines": baselines,
            "rank/plot": wandb.Image(str(out / "ranking.png")),
        }
    )
    run.summary.update({f"rank/{k}": v for k, v in s.items() if isinstance(v, int | float)})
    run.finish()


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "undefined" if value is None or value != value else format(value, fmt)


def baseline_lines(summary: dict[str, Any]) -> list[str]:
    """Plain sentences, one per set of 2+ archs: does the supernet beat each free ranking."""
    lines = []
    for label, n, ranking, tau, _rho, gain, lo, hi, verdict in baseline_table(summary):
        if n < 2:
            continue
        if ranking == "supernet":
            lines.append(f"{label} ({n} archs): supernet tau {_num(tau, '.2f')}")
            continue
        lines[-1] += (
            f"; {ranking} {_num(tau, '.2f')}: supernet {verdict} it ({_num(gain, '+.2f')}, "
            f"95% CI {_num(lo, '+.2f')} to {_num(hi, '+.2f')})"
        )
    return lines


def print_report(result: dict[str, Any], out: Path) -> None:
    rows = result["rows"]
    table = Table(title=f"{result['split']} split, {result['images']} images")
    columns = ["name", "group", "params (M)", "depth", "inherited %", "standalone %", "gap"]
    tuned = all("finetuned_acc1" in r for r in rows)
    if tuned:
        columns.append("finetuned %")
    for col in columns:
        table.add_column(col, justify="left" if col in ("name", "group") else "right")
    for r in rows:
        cells = [
            r["name"],
            r["group"],
            f"{r['params'] / 1e6:.3f}",
            str(r["depth"]),
            f"{r['inherited_acc1']:.2f}",
            f"{r['standalone_acc1']:.2f}",
            f"{r['gap']:+.2f}",
        ]
        if tuned:
            cells.append(f"{r['finetuned_acc1']:.2f}")
        table.add_row(*cells)
    Console().print(table)
    summary = result["summary"]
    s = summary["inherited_vs_standalone"]
    ci = s["kendall_tau_ci95"]
    lines = [
        f"Kendall tau {_num(s['kendall_tau'])} (95% CI {_num(ci[0], '.2f')} to "
        f"{_num(ci[1], '.2f')}), Spearman rho {_num(s['spearman_rho'])} over {s['n']} archs",
        "tau within params bins: "
        + ", ".join(f"{_num(b['tau'], '.2f')} (n={b['n']})" for b in s["tau_by_params_bin"]),
        f"top-{s['top_k']} overlap {s['top_k_overlap']:.2f}; retrain gap mean "
        f"{s['gap_mean']:+.2f}, max {s['gap_max']:+.2f} points",
        "the supernet against the free rankings (by params, by MACs, by depth then params; "
        "tau gain, paired bootstrap over archs):",
        *baseline_lines(summary),
    ]
    ceiling = summary.get("noise_ceiling")
    if ceiling:
        lines.append(
            f"noise ceiling: tau between two standalone seeds "
            f"{_num(ceiling['kendall_tau_seed0_vs_seed1'])}"
        )
    finetune = summary.get("finetune")
    if finetune:
        lines.append(
            f"finetune ({finetune['epochs']} epochs): +{finetune['gain_mean']:.2f} points over "
            f"inherited, {finetune['remaining_gap_mean']:+.2f} left to standalone"
        )
    outputs = {"ranking": out / "ranking.json", "plot": out / "ranking.png"}
    print_outputs("ovo rank finished", outputs, lines)
