"""The summary table of a Hydra sweep of training runs (``conf/experiment/sweep_*.yaml``).

Every training run writes ``panel.json`` (its last validation panel) into its directory; when a
multirun ends, :class:`SweepSummary` (a Hydra callback) gathers the jobs' overrides and panels
into ``<sweep dir>/summary.json`` and ``summary.md``, best panel mean first, and prints the table.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ovo.atomic import atomic_write_json, atomic_write_text


def summarize_sweep(sweep_dir: str | Path) -> dict[str, Any]:
    """One row per finished job of ``sweep_dir``: its overrides and its panel's statistics."""
    sweep_dir = Path(sweep_dir)
    rows, missing = [], []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=_job_number):
        panel_file = job / "panel.json"
        overrides_file = job / ".hydra" / "overrides.yaml"
        if not panel_file.is_file():
            missing.append(job.name)
            continue
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        panel = json.loads(panel_file.read_text())["panel"]
        acc = [v["acc1"] * 100 for v in panel.values()]
        rows.append(
            {
                "job": job.name,
                "overrides": overrides,
                "panel_mean_acc1": statistics.fmean(acc),
                "panel_min_acc1": min(acc),
                "panel_max_acc1": max(acc),
                "subnets": len(acc),
                "min_subnet_acc1": panel.get("min", {}).get("acc1", float("nan")) * 100,
                "max_subnet_acc1": panel.get("max", {}).get("acc1", float("nan")) * 100,
            }
        )
    rows.sort(key=lambda r: -r["panel_mean_acc1"])
    return {"sweep_dir": str(sweep_dir), "jobs": rows, "unfinished": missing}


def _job_number(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"Sweep {summary['sweep_dir']}: validation panel top-1 (%) per job, best mean first.",
        "",
        "| job | overrides | panel mean | min subnet | max subnet | subnets |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary["jobs"]:
        lines.append(
            f"| {r['job']} | `{' '.join(r['overrides'])}` | {r['panel_mean_acc1']:.2f} | "
            f"{r['min_subnet_acc1']:.2f} | {r['max_subnet_acc1']:.2f} | {r['subnets']} |"
        )
    if summary["unfinished"]:
        lines.append(f"\nUnfinished jobs (no panel.json): {', '.join(summary['unfinished'])}")
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    """Hydra callback: write and print the sweep's summary when the multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        summary = summarize_sweep(sweep_dir)
        atomic_write_json(sweep_dir / "summary.json", summary)
        text = summary_markdown(summary)
        atomic_write_text(sweep_dir / "summary.md", text)
        print("\n" + text + f"\nwrote {sweep_dir / 'summary.md'}", flush=True)
