"""Where ovo's own files live, in a source checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path


def conf_dir() -> Path:
    """The Hydra config directory: ``<repo>/conf`` in a checkout, ``ovo/conf`` in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "conf", here / "conf"):
        if (candidate / "train.yaml").is_file() or (candidate / "space").is_dir():
            return candidate
    raise FileNotFoundError(f"ovo's config directory was not found next to {here}; reinstall ovo")
