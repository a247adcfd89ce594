"""Parameter / FLOP budgets of a search and the feasibility check run before any evaluation.

FLOPs here are :meth:`CostModel.macs` (multiply-accumulates, as AutoFormer and most NAS papers
report them). Every check uses the closed-form costs only, so no candidate is ever built or
evaluated to find out it is over budget.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

from ovo.errors import ConfigError, InfeasibleBudgetError
from ovo.latency import LatencyTable, load_table
from ovo.latency.runtime import RUNTIMES
from ovo.settings import settings_dict, settings_from
from ovo.space import Arch, SearchSpace
from ovo.supernet.costs import CostModel
from ovo.units import Number, format_count, format_span, parse_count

# Above this many (params, MACs) sums per (embed, depth) the exact construction gives up
# exhaustiveness; the built-in spaces stay far below it (tiny: ~200, base: ~3000).
_MAX_DP_STATES = 200_000


def _format_bound(name: str, lo: Number | None, hi: Number | None) -> str | None:
    if lo is None and hi is None:
        return None
    if lo is None:
        return f"{name} <= {format_count(hi)}"
    if hi is None:
        return f"{name} >= {format_count(lo)}"
    return f"{name} in [{format_count(lo)}, {format_count(hi)}]"


@dataclass(frozen=True)
class Constraints:
    """Inclusive bounds on params and FLOPs (MACs), and an upper bound on latency predicted by
    a lookup table (:mod:`ovo.latency`); ``None`` leaves a side unbounded.

    ``latency_device``, when set, is the device the table must have been measured on (a part
    of its device name: ``cpu``, ``H100``...); ``latency_runtime`` the runtime it must have been
    timed in (``torch``: eager, also any table without a runtime; ``onnxruntime``).
    """

    params_min: int | float | str | None = None
    params_max: int | float | str | None = None
    flops_min: int | float | str | None = None
    flops_max: int | float | str | None = None
    latency_ms_max: float | None = None
    latency_table: str | None = None
    latency_device: str | None = None
    latency_runtime: str | None = None

    def __post_init__(self) -> None:
        for key in ("params_min", "params_max", "flops_min", "flops_max"):
            object.__setattr__(self, key, parse_count(getattr(self, key), key))
        if self.latency_ms_max is None and (
            self.latency_table or self.latency_device or self.latency_runtime
        ):
            raise ConfigError(
                "constraints.latency_table/latency_device/latency_runtime are set but "
                "latency_ms_max is not: give the budget (constraints.latency_ms_max=MS), search "
                "latency as an objective (objectives=[acc,latency]), or drop the table"
            )
        if self.latency_runtime is not None and self.latency_runtime not in RUNTIMES:
            raise ConfigError(
                f"constraints.latency_runtime={self.latency_runtime}: latency tables are timed "
                f"in one of {', '.join(RUNTIMES)} (null: any)"
            )
        if self.latency_ms_max is not None:
            if self.latency_ms_max <= 0:
                raise ConfigError(
                    f"constraints.latency_ms_max={self.latency_ms_max} must be positive"
                )
            if not self.latency_table:
                raise ConfigError(
                    "constraints.latency_ms_max needs constraints.latency_table: a table of "
                    "measured block latencies from python -m ovo.latency"
                )
            self.table  # noqa: B018  (read it now: a missing or damaged file fails here)
        for kind in ("params", "flops"):
            lo, hi = getattr(self, f"{kind}_min"), getattr(self, f"{kind}_max")
            if lo is not None and hi is not None and lo > hi:
                raise ConfigError(
                    f"{kind}_min={format_count(lo)} is above {kind}_max={format_count(hi)}; "
                    "swap them"
                )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Constraints:
        """From ``params_min/params_max/flops_min/flops_max`` (``macs_*`` is an alias of
        ``flops_*``); values are numbers or strings like ``"5.5M"``."""
        aliases = {"macs_min": "flops_min", "macs_max": "flops_max"}
        return settings_from(cls, data, "constraints", aliases=aliases)

    def to_dict(self) -> dict[str, Number | None]:
        data = settings_dict(self)
        if data["latency_runtime"] is None:  # absent as before it existed: states still resume
            del data["latency_runtime"]
        return data

    @property
    def table(self) -> LatencyTable | None:
        """The latency table (:class:`ovo.latency.LatencyTable`) or ``None``."""
        if self.latency_ms_max is None:
            return None
        return load_table(self.latency_table)

    @property
    def unbounded(self) -> bool:
        bounds = ("params_min", "params_max", "flops_min", "flops_max", "latency_ms_max")
        return all(getattr(self, k) is None for k in bounds)

    def describe(self) -> str:
        """``'params in [1M, 2M] and FLOPs <= 500M'`` (``'no constraint'`` if unbounded)."""
        parts = [
            _format_bound("params", self.params_min, self.params_max),
            _format_bound("FLOPs", self.flops_min, self.flops_max),
        ]
        if self.latency_ms_max is not None:
            runtime = self.table.runtime
            where = "" if runtime == "torch" else f" in {runtime}"
            parts.append(f"predicted latency{where} <= {self.latency_ms_max:g} ms")
        text = " and ".join(p for p in parts if p)
        return text or "no constraint"

    def check_table(self, space: SearchSpace, cost: CostModel) -> None:
        """Refuse a latency table measured for another space, model, device or runtime."""
        if self.table is not None:
            self.table.check_matches(
                space, cost.cfg, cost.head_dim, self.latency_device, self.latency_runtime
            )

    def admits(self, params: Number, flops: Number) -> bool:
        """Whether costs ``params`` and ``flops`` lie within the bounds."""
        return (
            (self.params_min is None or params >= self.params_min)
            and (self.params_max is None or params <= self.params_max)
            and (self.flops_min is None or flops >= self.flops_min)
            and (self.flops_max is None or flops <= self.flops_max)
        )

    def satisfied(self, arch: Arch, cost: CostModel) -> bool:
        """Whether ``arch`` is within budget (closed-form costs and table lookups only)."""
        if self.unbounded:
            return True
        if not self.admits(cost.params(arch), cost.macs(arch)):
            return False
        return self.latency_ms_max is None or self.table.predict(arch) <= self.latency_ms_max


def space_span(space: SearchSpace, cost: CostModel) -> tuple[int, int, int, int]:
    """``(params_min, params_max, flops_min, flops_max)`` over the space: the costs are monotone
    in every choice, so the extremes are those of ``min_arch`` and ``max_arch``."""
    lo, hi = space.min_arch, space.max_arch
    return cost.params(lo), cost.params(hi), cost.macs(lo), cost.macs(hi)


def _infeasible(
    space: SearchSpace, cost: CostModel, constraints: Constraints, why: str = ""
) -> InfeasibleBudgetError:
    p_lo, p_hi, f_lo, f_hi = space_span(space, cost)
    latency = ""
    if constraints.table is not None:
        latency = (
            f" and its fastest arch is predicted at {constraints.table.fastest(space):.3g} ms "
            f"({constraints.table.describe()})"
        )
    return InfeasibleBudgetError(
        f"no arch of space '{space.name}' has {constraints.describe()}{why}: the space spans "
        f"{format_count(p_lo)}-{format_count(p_hi)} params and "
        f"{format_span(f_lo, f_hi, 'MACs')}{latency}; "
        "widen the budget"
    )


def draw_accepted(
    space: SearchSpace, rng: random.Random, accept: Callable[[Arch], bool], max_tries: int
) -> Arch | None:
    """First of up to ``max_tries`` uniform samples that ``accept`` takes, else ``None``."""
    for _ in range(max_tries):
        arch = space.sample(rng)
        if accept(arch):
            return arch
    return None


def sample_feasible(
    space: SearchSpace,
    cost: CostModel,
    constraints: Constraints,
    rng: random.Random,
    max_tries: int = 10_000,
    exclude: Container[Arch] = (),
) -> Arch:
    """A uniform random arch within budget and not in ``exclude``, by rejection sampling (as
    AutoFormer), so the draw stays uniform over the admissible archs.

    Raises :class:`InfeasibleBudgetError` after ``max_tries`` rejected draws.
    """
    arch = draw_accepted(
        space,
        rng,
        lambda a: a not in exclude and constraints.satisfied(a, cost),
        max_tries,
    )
    if arch is None:
        raise InfeasibleBudgetError(
            f"drew {max_tries} random archs of space '{space.name}' and none has "
            f"{constraints.describe()}"
            + (" (excluding those already taken)" if exclude else "")
            + ": the budget admits too small a share of the space; widen it or raise max_tries"
        )
    return arch


def _construct(space: SearchSpace, cost: CostModel, c: Constraints) -> tuple[Arch | None, bool]:
    """An arch within budget built exactly, or ``None``; the flag says whether the answer is
    exhaustive (``None`` then proves infeasibility).

    For each (embed, depth), a layer's cost does not depend on the other layers (CostModel sums
    per-layer terms), so the achievable (params, MACs) are sums of per-layer deltas over the
    cheapest uniform arch: a dynamic programme over layers on the set of distinct sums, pruned
    by what the remaining layers can still add. Every answer is re-checked with the real costs.
    """
    inf = math.inf
    p_min = -inf if c.params_min is None else c.params_min
    p_max = inf if c.params_max is None else c.params_max
    f_min = -inf if c.flops_min is None else c.flops_min
    f_max = inf if c.flops_max is None else c.flops_max
    exhaustive = True
    layer_choices = list(product(space.num_heads, space.mlp_ratio))
    for embed, depth in product(space.embed_dim, space.depth):
        base_heads = (space.num_heads[0],) * depth
        base_ratios = (space.mlp_ratio[0],) * depth
        base = Arch(embed, base_heads, base_ratios)
        p0, f0 = cost.params(base), cost.macs(base)
        deltas: dict[tuple[int, int], tuple[int, float]] = {}
        for h, r in layer_choices:
            arch = Arch(embed, (h,) + base_heads[1:], (r,) + base_ratios[1:])
            deltas.setdefault((cost.params(arch) - p0, cost.macs(arch) - f0), (h, r))
        options = list(deltas.items())
        dp_lo, dp_hi = min(d[0] for d in deltas), max(d[0] for d in deltas)
        df_lo, df_hi = min(d[1] for d in deltas), max(d[1] for d in deltas)
        # layers[i] maps each reachable (params, MACs) sum after i+1 layers to (previous, choice).
        layers: list[dict[tuple[int, int], tuple[tuple[int, int] | None, tuple[int, float]]]] = []
        frontier: dict[tuple[int, int], Any] = {(p0, f0): None}
        for i in range(depth):
            rest = depth - i - 1
            step: dict[tuple[int, int], tuple[tuple[int, int] | None, tuple[int, float]]] = {}
            for p, f in frontier:
                for (dp, df), choice in options:
                    q, g = p + dp, f + df
                    if (q, g) in step:
                        continue
                    # Prune sums the remaining layers can no longer bring into the window.
                    if q + rest * dp_lo > p_max or q + rest * dp_hi < p_min:
                        continue
                    if g + rest * df_lo > f_max or g + rest * df_hi < f_min:
                        continue
                    step[(q, g)] = ((p, f), choice)
            if len(step) > _MAX_DP_STATES:
                exhaustive = False
                step = dict(list(step.items())[:_MAX_DP_STATES])
            layers.append(step)
            frontier = step
            if not frontier:
                break
        if not frontier:
            continue
        for key in frontier:
            heads: list[int] = []
            ratios: list[float] = []
            node: tuple[int, int] | None = key
            for step in reversed(layers):
                assert node is not None
                prev, (h, r) = step[node]
                heads.append(h)
                ratios.append(r)
                node = prev
            arch = Arch(embed, heads[::-1], ratios[::-1])
            if c.satisfied(arch, cost):
                return arch, exhaustive
            exhaustive = False  # a cost model that is not a per-layer sum: no proof either way
    return None, exhaustive


def check_feasible(
    space: SearchSpace,
    cost: CostModel,
    constraints: Constraints,
    *,
    seed: int = 0,
    samples: int = 2_000,
) -> Arch:
    """Fail fast if no arch of ``space`` is within budget; otherwise return one that is.

    Checked in order: each bound against the space's span (one-line message with the span and
    the budget), ``samples`` seeded uniform draws, then an exact construction over layer choices
    (catches combinations like very few params with very many FLOPs).
    """
    p_lo, p_hi, f_lo, f_hi = space_span(space, cost)
    c = constraints
    c.check_table(space, cost)
    if (
        (c.params_max is not None and c.params_max < p_lo)
        or (c.params_min is not None and c.params_min > p_hi)
        or (c.flops_max is not None and c.flops_max < f_lo)
        or (c.flops_min is not None and c.flops_min > f_hi)
        or (c.table is not None and c.table.fastest(space) > c.latency_ms_max)
    ):
        raise _infeasible(space, cost, c)
    if c.unbounded:
        return space.min_arch
    found = draw_accepted(space, random.Random(seed), lambda a: c.satisfied(a, cost), samples)
    if found is not None:
        return found
    if c.table is not None and c.satisfied(c.table.fastest_arch(space), cost):
        return c.table.fastest_arch(space)  # a tight latency budget only the fastest archs meet
    found, exhaustive = _construct(space, cost, c)
    if found is not None:
        return found
    why = "" if exhaustive else f" (none in {samples} random draws nor by construction)"
    raise _infeasible(space, cost, c, why)
