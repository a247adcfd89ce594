"""Counts with SI suffixes (``5.5M`` params, ``1.2G`` MACs): the one table ovo reads and writes."""

from __future__ import annotations

import math
import re
from typing import Any

from ovo.errors import ConfigError

Number = int | float

# Largest first: formatting picks the first scale the value reaches.
SCALES: tuple[tuple[str, float], ...] = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3))
_BY_SUFFIX = {suffix.lower(): int(scale) for suffix, scale in SCALES} | {"": 1}
_COUNT_RE = re.compile(r"^\s*([0-9][0-9_]*\.?[0-9_]*(?:e[+-]?[0-9]+)?)\s*([kmgt]?)\s*$", re.I)


def parse_count(value: Any, name: str = "value") -> Number | None:
    """A count from a number or a human string (``"5.5M"``, ``"1.2G"``, ``"300k"``, ``"5e6"``).

    ``None``, ``"none"``, ``"null"`` and ``""`` mean unbounded. Integral values come back as int.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not a count; give a number like 5.5e6 or '5.5M'")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        if value.strip().lower() in ("", "none", "null", "~"):
            return None
        match = _COUNT_RE.match(value)
        if not match:
            raise ConfigError(
                f"{name}={value!r} is not a count; give a number or a string like '5.5M' or '1.2G'"
            )
        number = float(match.group(1).replace("_", "")) * _BY_SUFFIX[match.group(2).lower()]
    else:
        raise ConfigError(f"{name}={value!r} is not a count; give a number or a string like '5.5M'")
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"{name}={value!r} must be a finite non-negative count")
    return int(number) if number.is_integer() else number


def scale_of(value: Number) -> tuple[str, float]:
    """``(suffix, scale)`` for ``value``: the largest SI scale it reaches, ``("", 1.0)`` below 1K."""
    return next(((s, f) for s, f in SCALES if abs(value) >= f), ("", 1.0))


def format_count(value: Number) -> str:
    """``5_870_000 -> '5.87M'``: three significant digits and a K/M/G/T suffix."""
    suffix, scale = scale_of(value)
    return f"{value / scale:.3g}{suffix}"


def format_span(lo: Number, hi: Number, unit: str) -> str:
    """``'0.336-0.674 GMACs'``: both ends in the unit of the larger one."""
    suffix, scale = scale_of(hi)
    return f"{lo / scale:.3g}-{hi / scale:.3g} {suffix}{unit}"
