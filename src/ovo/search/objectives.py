"""What a multi-objective search trades off: accuracy against one or two costs.

``objectives=[acc, <cost>[, <cost>]]`` with costs ``latency`` (predicted by the latency table
``constraints.latency_table``), ``params`` and ``macs`` (ovo's closed-form costs; ``flops`` is
accepted for ``macs``, ovo's name for them elsewhere). Accuracy is top-1 (%) on the held-out
search split, maximised; costs are minimised.

**The reference point** of the hypervolume is fixed by the space, never by a run, so the
hypervolumes of two runs on one space (another seed, budget or strategy) compare: accuracy
``ACC_FLOOR`` (0 %), the largest closed-form cost of the space for ``params`` and ``macs`` (those
of its largest arch: the costs grow with every choice), and the predicted latency of the table's
slowest arch of the space for ``latency``. Hypervolumes are of normalised objectives:
``(100 - acc) / (100 - ACC_FLOOR)`` and ``cost / reference cost``, against ``(1, ..., 1)``; so a
hypervolume is the share of the box between the ideal (100 %, zero cost) and the reference point
that the front dominates, in [0, 1]. An arch at the reference cost adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ovo.errors import ConfigError
from ovo.space import Arch, SearchSpace, mlp_hidden
from ovo.supernet.costs import CostModel

COSTS = ("latency", "params", "macs")
OBJECTIVES = ("acc", *COSTS)
ALIASES = {"flops": "macs"}
ACC_FLOOR = 0.0  # top-1 (%) of the reference point
ACC_IDEAL = 100.0
DEFAULT = ("acc", "params")


def slowest_arch(table: Any, space: SearchSpace) -> Arch:
    """The arch of ``space`` with the largest predicted latency in ``table`` (exact: the parts
    add up and the table's calibration line is increasing, so it is the deepest arch of the
    slowest block shape at the embed dim whose stem, head and blocks are slowest)."""
    best: tuple[float, Arch] | None = None
    depth = space.depth[-1]
    for e in space.embed_dim:
        ms, h, r = max(
            (table.block_ms[(e, h, mlp_hidden(e, r))], h, r)
            for h in space.num_heads
            for r in space.mlp_ratio
        )
        total = table.stem_ms[e] + table.head_ms[e] + depth * ms
        if best is None or total > best[0]:
            best = (total, Arch.uniform(e, depth, h, r))
    assert best is not None
    return best[1]


@dataclass(frozen=True)
class Objectives:
    """The objectives of a search (see the module docstring); ``table`` is the latency table
    (:class:`ovo.latency.LatencyTable`), needed when ``latency`` is one of them."""

    names: tuple[str, ...] = DEFAULT
    table: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = tuple(ALIASES.get(str(n), str(n)) for n in self.names)
        object.__setattr__(self, "names", names)
        shown = f"objectives=[{','.join(names)}]"
        unknown = [n for n in names if n not in OBJECTIVES]
        if unknown:
            raise ConfigError(
                f"{shown}: unknown objective {unknown[0]!r}; use acc with one or two of "
                f"{', '.join(COSTS)}"
            )
        if len(set(names)) != len(names):
            raise ConfigError(f"{shown} names an objective twice")
        if "acc" not in names:
            raise ConfigError(
                f"{shown} has no acc: a search trades accuracy against costs; add acc"
            )
        if not 2 <= len(names) <= 3:
            raise ConfigError(
                f"{shown} has {len(names)} objective(s); give acc and one or two costs "
                f"({', '.join(COSTS)})"
            )
        if names[0] != "acc":  # acc first: every front, file and plot reads it there
            object.__setattr__(self, "names", ("acc", *(n for n in names if n != "acc")))
        if "latency" in self.names and self.table is None:
            raise ConfigError(
                f"{shown} needs a latency table: constraints.latency_table=PATH (built by "
                "python -m ovo.latency for this checkpoint)"
            )

    @classmethod
    def parse(cls, names: Iterable[Any] | str | None, table: Any = None) -> Objectives:
        """From the ``objectives`` config value (a list; a string of comma-separated names)."""
        if names is None:
            return cls(DEFAULT, table)
        if isinstance(names, str):
            names = [n.strip() for n in names.strip("[]").split(",") if n.strip()]
        return cls(tuple(names), table)

    @property
    def costs(self) -> tuple[str, ...]:
        return self.names[1:]

    @property
    def uses_latency(self) -> bool:
        return "latency" in self.names

    def hyper(self) -> dict[str, Any]:
        """What a multi-objective trajectory depends on (part of its resume fingerprint)."""
        out: dict[str, Any] = {"objectives": list(self.names)}
        if self.uses_latency:
            out["objective_latency_table"] = self.table.fingerprint()
        return out

    # ---- values ---------------------------------------------------------------------------
    def latency(self, arch: Arch) -> float | None:
        """Predicted milliseconds of ``arch`` (``None`` without a table)."""
        return None if self.table is None else float(self.table.predict(arch))

    def cost_of(self, name: str, arch: Arch, params: int, macs: int) -> float:
        if name == "params":
            return float(params)
        if name == "macs":
            return float(macs)
        return float(self.table.predict(arch))

    def values(self, arch: Arch, acc: float, params: int, macs: int) -> tuple[float, ...]:
        """``(acc, cost, ...)`` in the order of :attr:`names`, in their own units."""
        return (float(acc), *(self.cost_of(n, arch, params, macs) for n in self.costs))

    def minimised(self, values: Sequence[float]) -> tuple[float, ...]:
        """``values`` as all-minimised objectives (accuracy negated)."""
        return (-values[0], *values[1:])

    def reference(self, space: SearchSpace, cost: CostModel) -> tuple[float, ...]:
        """The reference point in the objectives' own units (see the module docstring)."""
        biggest = space.max_arch
        out = [ACC_FLOOR]
        for name in self.costs:
            if name == "latency":
                out.append(float(self.table.predict(slowest_arch(self.table, space))))
            else:
                out.append(self.cost_of(name, biggest, cost.params(biggest), cost.macs(biggest)))
        return tuple(out)

    def normalised(self, values: Sequence[float], reference: Sequence[float]) -> tuple[float, ...]:
        """``values`` mapped into the hypervolume's unit box (see the module docstring)."""
        acc = (ACC_IDEAL - values[0]) / (ACC_IDEAL - reference[0])
        return (acc, *(v / r for v, r in zip(values[1:], reference[1:])))
