"""The arch-spec grammar the commands share: which subnets ``arch=...`` (or ``fixed_arch=...``)
names, with a name for each.

- ``min`` / ``max``: the smallest / largest arch of the space;
- ``random:N``: ``N`` uniform archs drawn from ``seed`` (the same N archs for the same seed);
- ``stratified:N``: ``N`` archs spread evenly over the space's params range: one drawn (seeded,
  uniformly among those that fit) from each of ``N`` equal-width params intervals;
- ``band:N@P`` / ``band:N@P:W``: ``N`` distinct archs with params within ``P`` +-``W`` (a
  fraction like ``0.05`` or a percentage like ``5%``; default 5%), seeded: archs of similar
  size, where a search under budget ``P`` has to tell them apart;
- a path to a YAML/JSON arch file (e.g. a search's ``best_arch.yaml``): named by its stem;
- an inline mapping ``{embed_dim: ..., depth: ..., num_heads: [...], mlp_ratio: [...]}``;
- a list of any of those.

Every arch is validated against the space. :func:`parse_arch_groups` also says which kind of item
produced each arch (its group: ``band``, ``strat``, ``random``, ``min``, ``max``, ``file``,
``inline``), so a ranking groups archs by how they were chosen, not by their names.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ovo.budget import Constraints, check_feasible, sample_feasible
from ovo.errors import ConfigError, InfeasibleBudgetError
from ovo.settings import plain
from ovo.space import Arch, SearchSpace
from ovo.supernet.costs import CostModel
from ovo.units import format_count, parse_count

BAND_WIDTH = 0.05


def parse_arch_spec(
    spec: Any,
    space: SearchSpace,
    seed: int = 0,
    key: str = "arch",
    cost: CostModel | None = None,
) -> dict[str, Arch]:
    """Named archs from a spec (see the module docstring); errors name the config ``key``.
    ``stratified`` and ``band`` need the ``cost`` model of the supernet (its params count)."""
    return {
        name: arch for name, (arch, _) in parse_arch_groups(spec, space, seed, key, cost).items()
    }


def parse_arch_groups(
    spec: Any,
    space: SearchSpace,
    seed: int = 0,
    key: str = "arch",
    cost: CostModel | None = None,
) -> dict[str, tuple[Arch, str]]:
    """:func:`parse_arch_spec` with each arch's group: the kind of spec item that produced it
    (:data:`GROUPS`), so a file called ``bandit.yaml`` is a ``file``, not one of the band."""
    spec = plain(spec)
    if isinstance(spec, list | tuple):
        out: dict[str, tuple[Arch, str]] = {}
        for item in spec:
            named = parse_arch_groups(item, space, seed, key, cost)
            twice = sorted(set(named) & set(out))
            if twice:
                raise ConfigError(
                    f"{key}: {item} names {', '.join(twice)} again (two items of one kind, e.g. "
                    "two band: or random: specs, share names); give one item of each kind"
                )
            out.update(named)
        return out
    group = _group(spec)
    return {name: (arch, group) for name, arch in _parse_one(spec, space, seed, key, cost).items()}


# the group of each kind of spec item ("strat" as ovo.rank's ranking.json has always named it)
GROUPS = {"band:": "band", "stratified:": "strat", "random:": "random"}


def _group(spec: Any) -> str:
    if isinstance(spec, dict):
        return "inline"
    text = str(spec)
    if text in ("min", "max"):
        return text
    return next((g for prefix, g in GROUPS.items() if text.startswith(prefix)), "file")


def _parse_one(
    spec: Any, space: SearchSpace, seed: int, key: str, cost: CostModel | None
) -> dict[str, Arch]:
    """The archs of one spec item (not a list)."""
    if isinstance(spec, dict):
        return {"custom": space.validate(Arch.from_dict(spec))}
    text = str(spec)
    if text in ("min", "max"):
        return {text: space.min_arch if text == "min" else space.max_arch}
    if text.startswith("random:"):
        try:
            n = int(text.split(":", 1)[1])
        except ValueError as err:
            raise ConfigError(f"{key}={text}: use random:N with an integer N") from err
        rng = random.Random(f"ovo-eval/{seed}")
        return {f"random{i:03d}": space.sample(rng) for i in range(n)}
    if text.startswith(("stratified:", "band:")):
        if cost is None:
            raise ConfigError(f"{key}={text}: stratified/band archs need a trained supernet")
        if text.startswith("stratified:"):
            return stratified(space, cost, _count(text, text.split(":", 1)[1], key), seed)
        return band(space, cost, *_band_args(text, key), seed=seed)
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"{key}={text}: not min, max, random:N or an existing YAML/JSON file")
    return {path.stem: space.validate(Arch.from_yaml(path))}


def parse_one_arch(spec: Any, space: SearchSpace, key: str = "arch") -> tuple[str, Arch]:
    """The single named arch of a spec that must name exactly one (export, ``fixed_arch``)."""
    archs = parse_arch_spec(spec, space, key=key)
    if len(archs) != 1:
        raise ConfigError(f"{key}={spec} names {len(archs)} archs; give exactly one")
    return next(iter(archs.items()))


def _count(text: str, value: str, key: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{key}={text}: give a positive whole number of archs")
    return n


def _band_args(text: str, key: str) -> tuple[int, float, float]:
    """``band:N@P[:W]`` -> (N, P, W)."""
    body = text.split(":", 1)[1]
    if "@" not in body:
        raise ConfigError(
            f"{key}={text}: use band:N@PARAMS or band:N@PARAMS:WIDTH (e.g. 12@0.5M:5%)"
        )
    n_text, rest = body.split("@", 1)
    center_text, _, width_text = rest.partition(":")
    n = _count(text, n_text, key)
    center = parse_count(center_text, f"{key} band center")
    if not center:
        raise ConfigError(f"{key}={text}: the band needs a params count, e.g. band:12@0.5M")
    width = BAND_WIDTH
    if width_text:
        try:
            width = float(width_text.rstrip("%")) / (100 if width_text.endswith("%") else 1)
        except ValueError as err:
            raise ConfigError(f"{key}={text}: the width is a fraction or a percentage") from err
        if not 0 < width < 1:
            raise ConfigError(f"{key}={text}: the width must be between 0 and 100%")
    return n, float(center), width


def _draw_within(
    space: SearchSpace,
    cost: CostModel,
    lo: float,
    hi: float,
    rng: random.Random,
    taken: set[Arch],
) -> Arch:
    """A new arch with params in [lo, hi]: uniform among those that fit (rejection sampling), or
    one built exactly when uniform draws almost never land there (the ends of the range)."""
    budget = Constraints(params_min=lo, params_max=hi)
    try:
        return sample_feasible(space, cost, budget, rng, max_tries=20_000, exclude=taken)
    except InfeasibleBudgetError:
        arch = check_feasible(space, cost, budget, seed=rng.randrange(2**31))
        if arch in taken:
            raise
        return arch


def stratified(space: SearchSpace, cost: CostModel, n: int, seed: int = 0) -> dict[str, Arch]:
    """``n`` archs, one from each of ``n`` equal-width intervals of the space's params range."""
    lo, hi = cost.params(space.min_arch), cost.params(space.max_arch)
    rng = random.Random(f"ovo-stratified/{seed}")
    edges = [lo + (hi - lo) * i / n for i in range(n + 1)]
    taken: set[Arch] = set()
    out = {}
    for i in range(n):
        arch = _draw_within(space, cost, edges[i], edges[i + 1], rng, taken)
        taken.add(arch)
        out[f"strat{i:02d}"] = arch
    return out


def band(
    space: SearchSpace, cost: CostModel, n: int, center: float, width: float, seed: int = 0
) -> dict[str, Arch]:
    """``n`` distinct archs with params within ``center * (1 +- width)``."""
    lo, hi = center * (1 - width), center * (1 + width)
    rng = random.Random(f"ovo-band/{seed}/{center}/{width}")
    taken: set[Arch] = set()
    out = {}
    for i in range(n):
        try:
            arch = _draw_within(space, cost, lo, hi, rng, taken)
        except InfeasibleBudgetError as err:
            raise InfeasibleBudgetError(
                f"band:{n}@{format_count(center)}: found only {i} distinct archs of space "
                f"'{space.name}' with {format_count(lo)}-{format_count(hi)} params; widen the "
                "band (band:N@P:W) or ask for fewer"
            ) from err
        taken.add(arch)
        out[f"band{i:02d}"] = arch
    return out
