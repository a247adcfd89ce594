"""The bench's rows, its printed table and ``bench/results/bench.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Row:
    """One measured value; ``target`` is ``">= x"``, ``"<= x"`` or empty (reported only)."""

    measure: str
    setting: str
    value: float | None
    target: str
    unit: str = "ratio"
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool | None:
        if not self.target or self.value is None:
            return None
        op, num = self.target.split()
        return self.value >= float(num) if op == ">=" else self.value <= float(num)


def print_table(rows: list[Row], header: str) -> None:
    print(f"\n{header}\n")
    print(f"| {'measure':58s} | {'setting':24s} | {'value':>8s} | {'target':8s} | ok |")
    print(f"|{'-' * 60}|{'-' * 26}|{'-' * 10}|{'-' * 10}|----|")
    for r in rows:
        ok = {True: "yes", False: "NO", None: "-"}[r.ok]
        value = "n/a" if r.value is None else f"{r.value:8.3f}"
        print(f"| {r.measure:58s} | {r.setting:24s} | {value:>8s} | {r.target:8s} | {ok:3s}|")


def write_json(out: Path, meta: dict, rows: list[Row], quiet: bool = False) -> None:
    """``meta`` (machine, versions, repeats) and every row with its ``ok``; rewritten whole
    (through a temporary file) so a reader, or a run stopped mid-write, sees a complete file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    data = meta | {"rows": [asdict(r) | {"ok": r.ok} for r in rows]}
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(out)
    if not quiet:
        print(f"\nwrote {out}")
