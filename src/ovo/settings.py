"""Typed settings from config mappings: the one way a Hydra/YAML mapping becomes a frozen dataclass.

Every settings class of ovo (``ViTConfig``, ``DistillConfig``, ``SearchSpace``, ``Constraints``,
``AugConfig``, ``SearchSettings``, ``EvalSettings``, ...) is a frozen dataclass whose fields are
the config keys. :func:`settings_from` checks a mapping against it and converts values to the
field types, so every bad key or value fails the same way: a :class:`ConfigError` that names the
key as the user writes it (``model.patch_size=...``). Checks that involve several fields live in
the dataclass' ``__post_init__`` and raise ``ConfigError`` too.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from omegaconf import OmegaConf

from ovo.errors import ConfigError

T = TypeVar("T")


def plain(data: Any) -> Any:
    """A resolved plain-Python copy of a config node (dicts and lists); other values as they are."""
    if OmegaConf.is_config(data):
        return OmegaConf.to_container(data, resolve=True)
    return data


def settings_from(
    cls: type[T],
    data: Mapping[str, Any] | None,
    section: str,
    *,
    aliases: Mapping[str, str] | None = None,
    error: type[ConfigError] = ConfigError,
    **fixed: Any,
) -> T:
    """``cls(**data)`` for a settings dataclass, checked and converted field by field.

    Unknown keys, values of the wrong type and the class' own checks raise :class:`ConfigError`
    naming ``section.key`` (``key`` alone when ``section`` is empty: top-level keys). ``aliases`` maps accepted alternative names to fields; ``fixed``
    values are passed as they are (not from the user's mapping). ``_target_`` keys are ignored.
    ``error`` is the :class:`ConfigError` subclass to raise (e.g. ``SpaceError``).
    """
    data = plain(data)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise error(f"{section} must be a mapping of settings, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    dotted = f"{section}." if section else ""  # top-level keys are named bare
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        if key == "_target_":
            continue
        key = (aliases or {}).get(key, key)
        if key not in names or key in fixed:
            raise error(f"unknown setting {dotted}{raw_key}; known: {', '.join(sorted(names))}")
        if key in values:
            raise error(f"{dotted}{key} is given twice (once through an alias)")
        try:
            values[key] = coerce(value, hints[key], f"{dotted}{key}")
        except ConfigError as err:
            raise error(str(err)) from None
    return cls(**values, **fixed)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (tuple, list):
        return "a list"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, name: str) -> Any:
    """``value`` converted to the type ``tp`` (int, float, bool, str, Literal, tuples, lists,
    mappings, unions of those); raises :class:`ConfigError` naming ``name`` if it does not fit."""
    value = plain(value)
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}={value!r}: expected {_describe(tp)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{name}={value!r}: use one of {', '.join(str(a) for a in args)}")
    if origin in (tuple, list):
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple):
            raise ConfigError(f"{name}={value!r}: expected a list")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{name}={value!r}: expected a list of {len(args)} values")
            items = [coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            inner = args[0] if args else Any
            items = [coerce(v, inner, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}={value!r}: expected a mapping")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{name}={value!r}: expected {_describe(tp)}")


def settings_dict(obj: Any) -> dict[str, Any]:
    """A settings dataclass as a plain dict (tuples as lists), the inverse of ``settings_from``."""

    def listify(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [listify(x) for x in v]
        if isinstance(v, dict):
            return {k: listify(x) for k, x in v.items()}
        return v

    return {f.name: listify(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}


# ---- compile settings (``compile``, ``compile_options``; see ovo.supernet.compile) ----------
COMPILE_MODES = ("none", "blocks")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")


@dataclasses.dataclass(frozen=True)
class CompileOptions:
    """``compile_options`` of the commands: the ``torch.compile`` backend and mode, and whether
    to compile every block shape before the first step (``warmup``)."""

    backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    mode: str | None = None
    warmup: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> CompileOptions:
        return settings_from(cls, data, "compile_options")


def check_compile_mode(mode: str) -> str:
    """The ``compile`` setting, checked: ``none`` or ``blocks``."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile={mode!r}: use none or blocks")
    return mode
