"""GOMP_SPINCOUNT side by side: the threads bench's quiet/loaded protocol
(bench/ovo_bench/threads.py, persistent children, interleaved rounds) run with more conditions,
for docs/performance/threads.md ("On an idle machine"). Run it on an idle machine.

    python studies/threads_spin.py --out docs/performance/records/threads_idle_spin.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from ovo_bench.threads import machine_load, run  # noqa: E402

CONDITIONS = {
    "old": {"OVO_THREADS": "off"},
    "new": {},
    "spin10k": {"GOMP_SPINCOUNT": "10000"},
    "spin100k": {"GOMP_SPINCOUNT": "100000"},
    "omp1": {"OMP_NUM_THREADS": "1"},
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    before = machine_load()
    seconds, others = run(CONDITIONS, "quickstart", args.steps, 5, args.repeats)
    out = {"before": before, "after": machine_load(), "seconds": seconds, "others_cpus": others}
    for phase, by_condition in seconds.items():
        reference = by_condition["old" if phase == "quiet" else "omp1"]
        for name, values in by_condition.items():
            ratios = [a / b for a, b in zip(values, reference)]
            print(
                f"{phase} {name} {statistics.median(values) * 1e3:.1f} ms/step, ratio "
                f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f})"
            )
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
