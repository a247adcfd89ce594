"""The arch-spec grammar the commands share: which subnets ``arch=...`` (or ``fixed_arch=...``)
names, with a name for each.

- ``min`` / ``max``: the smallest / largest arch of the space;
- ``random:N``: ``N`` uniform archs drawn from ``seed`` (the same N archs for the same seed);
- a path to a YAML/JSON arch file (e.g. a search's ``best_arch.yaml``): named by its stem;
- an inline mapping ``{embed_dim: ..., depth: ..., num_heads: [...], mlp_ratio: [...]}``;
- a list of any of those.

Every arch is validated against the space.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ovo.errors import ConfigError
from ovo.settings import plain
from ovo.space import Arch, SearchSpace


def parse_arch_spec(
    spec: Any, space: SearchSpace, seed: int = 0, key: str = "arch"
) -> dict[str, Arch]:
    """Named archs from a spec (see the module docstring); errors name the config ``key``."""
    spec = plain(spec)
    if isinstance(spec, list | tuple):
        out: dict[str, Arch] = {}
        for item in spec:
            out.update(parse_arch_spec(item, space, seed, key))
        return out
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
