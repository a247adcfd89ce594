"""The shape every command shares."""

from __future__ import annotations

from collections.abc import Sequence

# Config sections whose keys come from the checkpoint, so Hydra's struct mode cannot know them:
# `data.root=/x` is rewritten to `++data.root=/x` (add or override) for these commands.
OPEN_SECTIONS: dict[str, tuple[str, ...]] = {"search": ("data",), "evaluate": ("data",)}


def open_overrides(config_name: str, overrides: Sequence[str]) -> list[str]:
    """``overrides`` with ``section.key=value`` turned into ``++section.key=value`` for the
    open sections of ``config_name``, so checkpoint commands take ``data.root=/x`` as training
    does."""
    sections = OPEN_SECTIONS.get(config_name, ())
    out = []
    for arg in overrides:
        head = arg.split("=", 1)[0]
        if "=" in arg and any(head.startswith(f"{s}.") for s in sections):
            arg = f"++{arg}"
        out.append(arg)
    return out
