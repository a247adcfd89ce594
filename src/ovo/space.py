"""Search spaces and architectures as data.

An :class:`Arch` is one subnet of the weight-sharing supernet: an embedding dim shared by all
layers, and per-layer head counts and MLP ratios (its depth is the number of layers). It is an
immutable, hashable value, so it can be passed around, used as a dict key and logged; nothing in
ovo keeps a "current architecture" as mutable module state.

A :class:`SearchSpace` holds the choices of each dimension and everything the training and the
search need from them: validation, seeded sampling, min/max archs, size, mutation and crossover.
Every random operation takes an explicit ``random.Random`` so callers own all randomness.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ovo.errors import ConfigError
from ovo.paths import conf_dir
from ovo.settings import settings_from


class SpaceError(ConfigError, ValueError):
    """A search space definition that cannot be used (empty or non-positive choices...)."""


class ArchError(ConfigError, ValueError):
    """An architecture that is malformed or outside its search space."""


def _as_tuple(values: Iterable[Any], cast: type) -> tuple:
    return tuple(cast(v) for v in values)


def mlp_hidden(embed_dim: int, mlp_ratio: float) -> int:
    """MLP hidden width at ``embed_dim`` (timm's convention: ``int(mlp_ratio * embed_dim)``)."""
    return int(mlp_ratio * embed_dim)


@dataclass(frozen=True)
class Arch:
    """One subnet: ``embed_dim`` and per-layer ``num_heads`` / ``mlp_ratio`` (depth = their length)."""

    embed_dim: int
    num_heads: tuple[int, ...]
    mlp_ratio: tuple[float, ...]

    def __post_init__(self) -> None:
        # Accept lists (from YAML/JSON) but store tuples so the value stays hashable and immutable.
        object.__setattr__(self, "embed_dim", int(self.embed_dim))
        object.__setattr__(self, "num_heads", _as_tuple(self.num_heads, int))
        object.__setattr__(self, "mlp_ratio", _as_tuple(self.mlp_ratio, float))
        if len(self.num_heads) != len(self.mlp_ratio):
            raise ArchError(
                f"arch has {len(self.num_heads)} num_heads entries but {len(self.mlp_ratio)} "
                "mlp_ratio entries: give one of each per layer"
            )
        if not self.num_heads:
            raise ArchError("arch has no layers: num_heads and mlp_ratio must be non-empty")

    @property
    def depth(self) -> int:
        return len(self.num_heads)

    @classmethod
    def uniform(cls, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float) -> Arch:
        """The arch with the same heads and MLP ratio in every layer."""
        return cls(embed_dim, (num_heads,) * depth, (mlp_ratio,) * depth)

    def mlp_hidden(self, layer: int) -> int:
        """MLP hidden width of ``layer`` (see :func:`mlp_hidden`)."""
        return mlp_hidden(self.embed_dim, self.mlp_ratio[layer])

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": list(self.num_heads),
            "mlp_ratio": list(self.mlp_ratio),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Arch:
        data = dict(data)
        unknown = set(data) - {"embed_dim", "depth", "num_heads", "mlp_ratio"}
        if unknown:
            raise ArchError(
                f"unknown arch field(s) {sorted(unknown)}; expected embed_dim, "
                "depth, num_heads, mlp_ratio"
            )
        for key in ("embed_dim", "num_heads", "mlp_ratio"):
            if key not in data:
                raise ArchError(f"arch is missing field '{key}'")
        depth = data.pop("depth", None)
        heads, ratios = data["num_heads"], data["mlp_ratio"]
        # A scalar heads/ratio with an explicit depth means "the same in every layer".
        if not isinstance(heads, Sequence):
            if depth is None:
                raise ArchError("arch gives a single num_heads but no depth")
            heads = [heads] * int(depth)
        if not isinstance(ratios, Sequence):
            if depth is None:
                raise ArchError("arch gives a single mlp_ratio but no depth")
            ratios = [ratios] * int(depth)
        arch = cls(data["embed_dim"], heads, ratios)
        if depth is not None and int(depth) != arch.depth:
            raise ArchError(f"arch says depth={depth} but lists {arch.depth} layers")
        return arch

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> Arch:
        """Load from a YAML/JSON file path, or parse the text itself if it is not a file."""
        path = Path(path_or_text)
        try:
            is_file = path.is_file()
        except OSError:  # a long YAML string is not a valid path
            is_file = False
        text = path.read_text() if is_file else str(path_or_text)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            where = f"{path_or_text!s}" if is_file else "the arch text"
            first = " ".join(str(err).split())[:160]
            raise ArchError(f"{where} is not valid YAML ({first}); fix or regenerate it") from err
        if not isinstance(data, Mapping):
            raise ArchError(
                f"{path_or_text!s}: an arch file must be a mapping with embed_dim, "
                "depth, num_heads and mlp_ratio"
            )
        if "arch" in data and isinstance(data["arch"], Mapping):
            data = data["arch"]
        return cls.from_dict(data)

    def short(self) -> str:
        """A compact human-readable id, e.g. ``e192-d12-h3334..-r4.0,3.5..``."""
        heads = "".join(str(h) for h in self.num_heads)
        ratios = ",".join(f"{r:g}" for r in self.mlp_ratio)
        return f"e{self.embed_dim}-d{self.depth}-h{heads}-r{ratios}"


@dataclass(frozen=True)
class SearchSpace:
    """The choices of each elastic dimension. Choices are stored sorted and de-duplicated."""

    embed_dim: tuple[int, ...]
    depth: tuple[int, ...]
    num_heads: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    head_dim: int = 64
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        for key, cast in (
            ("embed_dim", int),
            ("depth", int),
            ("num_heads", int),
            ("mlp_ratio", float),
        ):
            raw = getattr(self, key)
            if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
                raise SpaceError(
                    f"space '{self.name}': {key} must be a list of choices, got {raw!r}"
                )
            try:
                values = tuple(sorted(set(_as_tuple(raw, cast))))
            except (TypeError, ValueError) as err:
                raise SpaceError(
                    f"space '{self.name}': {key} has a non-numeric choice: {raw!r}"
                ) from err
            if not values:
                raise SpaceError(f"space '{self.name}': {key} has no choices; give at least one")
            if values[0] <= 0:
                raise SpaceError(
                    f"space '{self.name}': {key} choices must be positive, got {list(values)}"
                )
            object.__setattr__(self, key, values)
        if int(self.head_dim) <= 0:
            raise SpaceError(f"space '{self.name}': head_dim must be positive, got {self.head_dim}")
        object.__setattr__(self, "head_dim", int(self.head_dim))
        for r in self.mlp_ratio:
            if mlp_hidden(self.embed_dim[0], r) < 1:
                raise SpaceError(
                    f"space '{self.name}': mlp_ratio {r} gives an empty MLP at "
                    f"embed_dim {self.embed_dim[0]}"
                )

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str | None = None) -> SearchSpace:
        data = dict(data)
        missing = {"embed_dim", "depth", "num_heads", "mlp_ratio"} - set(data)
        if missing:
            raise SpaceError(f"space is missing key(s) {sorted(missing)}")
        if name is not None:
            data["name"] = name
        return settings_from(cls, data, "space", error=SpaceError)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        path = Path(path)
        if not path.is_file():
            raise SpaceError(f"space file {path} does not exist")
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, Mapping):
            raise SpaceError(f"{path}: a space file must be a mapping")
        return cls.from_dict(data, name=data.get("name", path.stem))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "embed_dim": list(self.embed_dim),
            "depth": list(self.depth),
            "num_heads": list(self.num_heads),
            "mlp_ratio": list(self.mlp_ratio),
            "head_dim": self.head_dim,
        }

    # ---- extremes and size ---------------------------------------------------------------
    @property
    def max_arch(self) -> Arch:
        return Arch.uniform(
            self.embed_dim[-1], self.depth[-1], self.num_heads[-1], self.mlp_ratio[-1]
        )

    @property
    def min_arch(self) -> Arch:
        return Arch.uniform(self.embed_dim[0], self.depth[0], self.num_heads[0], self.mlp_ratio[0])

    @property
    def max_mlp_hidden(self) -> int:
        return mlp_hidden(self.embed_dim[-1], self.mlp_ratio[-1])

    def block_shapes(self) -> list[tuple[int, int, int]]:
        """Every (embed dim, heads, MLP hidden width) a block of this space can run at, sorted:
        the unit of compiled graphs and latency tables."""
        return sorted(
            {
                (e, h, mlp_hidden(e, r))
                for e in self.embed_dim
                for h in self.num_heads
                for r in self.mlp_ratio
            }
        )

    def num_archs(self) -> int:
        """Number of distinct archs: sum over depths d of |embed| * (|heads| * |ratios|)^d."""
        per_layer = len(self.num_heads) * len(self.mlp_ratio)
        return len(self.embed_dim) * sum(per_layer**d for d in self.depth)

    # ---- membership ----------------------------------------------------------------------
    def validate(self, arch: Arch) -> Arch:
        """Return ``arch`` if it belongs to this space; otherwise raise naming the field."""
        if arch.embed_dim not in self.embed_dim:
            raise ArchError(
                f"arch embed_dim={arch.embed_dim} is not in space '{self.name}' "
                f"(choices {list(self.embed_dim)})"
            )
        if arch.depth not in self.depth:
            raise ArchError(
                f"arch depth={arch.depth} is not in space '{self.name}' "
                f"(choices {list(self.depth)})"
            )
        for i, (h, r) in enumerate(zip(arch.num_heads, arch.mlp_ratio)):
            if h not in self.num_heads:
                raise ArchError(
                    f"arch num_heads[{i}]={h} is not in space '{self.name}' "
                    f"(choices {list(self.num_heads)})"
                )
            if r not in self.mlp_ratio:
                raise ArchError(
                    f"arch mlp_ratio[{i}]={r} is not in space '{self.name}' "
                    f"(choices {list(self.mlp_ratio)})"
                )
        return arch

    def __contains__(self, arch: object) -> bool:
        if not isinstance(arch, Arch):
            return False
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    # ---- sampling and evolution ----------------------------------------------------------
    def sample(
        self,
        rng: random.Random,
        sub: SearchSpace | None = None,
        depth_weights: Sequence[float] | None = None,
    ) -> Arch:
        """A uniform random arch (each choice uniform, as AutoFormer), optionally from ``sub``.

        ``depth_weights`` (one per depth choice of the space sampled from) draws the depth with
        those relative weights instead of uniformly; the other genes stay uniform."""
        space = sub or self
        if depth_weights is None:
            depth = rng.choice(space.depth)
        else:
            if len(depth_weights) != len(space.depth):
                raise SpaceError(
                    f"{len(depth_weights)} depth weights for the {len(space.depth)} depth "
                    f"choices {list(space.depth)} of space '{space.name}'"
                )
            depth = rng.choices(space.depth, weights=depth_weights)[0]
        return Arch(
            rng.choice(space.embed_dim),
            tuple(rng.choice(space.num_heads) for _ in range(depth)),
            tuple(rng.choice(space.mlp_ratio) for _ in range(depth)),
        )

    def upper(self, k: int = 2) -> SearchSpace:
        """The sub-space of the ``k`` largest choices of each dimension (a teacher pool)."""
        return SearchSpace(
            self.embed_dim[-k:],
            self.depth[-k:],
            self.num_heads[-k:],
            self.mlp_ratio[-k:],
            self.head_dim,
            name=f"{self.name}-upper{k}",
        )

    def sample_at_least(self, arch: Arch, rng: random.Random) -> Arch:
        """A uniform random arch at least as large as ``arch`` in every gene: embed, depth, and
        each of ``arch``'s layers' heads and MLP ratio; extra layers are drawn uniformly."""
        depth = rng.choice([d for d in self.depth if d >= arch.depth])
        heads = [
            rng.choice([h for h in self.num_heads if h >= arch.num_heads[i]])
            if i < arch.depth
            else rng.choice(self.num_heads)
            for i in range(depth)
        ]
        ratios = [
            rng.choice([r for r in self.mlp_ratio if r >= arch.mlp_ratio[i]])
            if i < arch.depth
            else rng.choice(self.mlp_ratio)
            for i in range(depth)
        ]
        return Arch(rng.choice([e for e in self.embed_dim if e >= arch.embed_dim]), heads, ratios)

    def mutate(
        self, arch: Arch, rng: random.Random, layer_prob: float = 0.2, depth_embed_prob: float = 0.4
    ) -> Arch:
        """AutoFormer's mutation: depth and embed resampled with ``depth_embed_prob``, each
        layer's heads and MLP ratio with ``layer_prob``; new layers are drawn uniformly."""
        depth, embed = arch.depth, arch.embed_dim
        heads, ratios = list(arch.num_heads), list(arch.mlp_ratio)
        if rng.random() < depth_embed_prob:
            depth = rng.choice(self.depth)
            while len(heads) < depth:
                heads.append(rng.choice(self.num_heads))
                ratios.append(rng.choice(self.mlp_ratio))
            heads, ratios = heads[:depth], ratios[:depth]
        if rng.random() < depth_embed_prob:
            embed = rng.choice(self.embed_dim)
        for i in range(depth):
            if rng.random() < layer_prob:
                heads[i] = rng.choice(self.num_heads)
            if rng.random() < layer_prob:
                ratios[i] = rng.choice(self.mlp_ratio)
        return Arch(embed, heads, ratios)

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Uniform crossover: each gene (depth, embed, each layer's heads and ratio) from either
        parent; a layer only one parent has comes from that parent."""
        depth = rng.choice((a.depth, b.depth))
        embed = rng.choice((a.embed_dim, b.embed_dim))
        heads, ratios = [], []
        for i in range(depth):
            parents = [p for p in (a, b) if i < p.depth]
            heads.append(rng.choice(parents).num_heads[i])
            ratios.append(rng.choice(parents).mlp_ratio[i])
        return Arch(embed, heads, ratios)


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load a space by name (``tiny``) from ovo's ``conf/space`` or from a YAML path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return SearchSpace.from_yaml(path)
    candidate = conf_dir() / "space" / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in (conf_dir() / "space").glob("*.yaml"))
        raise SpaceError(
            f"unknown space '{name_or_path}'; known spaces: {known} (or give a YAML path)"
        )
    return SearchSpace.from_yaml(candidate)
