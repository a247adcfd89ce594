"""The split names, in one place: every split a data module makes, and those a trained supernet
is scored on by ``ovo.evaluate`` (``split``), ``ovo.search`` (``final_split``) and ``ovo.rank``.

- ``train``: the training images left after the held-out splits;
- ``search``: held out of train, the search's fitness split (never trained on);
- ``val``: held out of train with ``data.val_per_class``, else the dataset's val/test images;
- ``test``: the dataset's val/test images.
"""

from __future__ import annotations

from ovo.errors import ConfigError

SPLITS = ("train", "search", "val", "test")
EVAL_SPLITS = ("val", "test", "search")


def check_eval_split(split: str, key: str = "split") -> str:
    """``split`` if it is one of :data:`EVAL_SPLITS`; else a :class:`ConfigError` naming
    ``key``."""
    if split not in EVAL_SPLITS:
        *rest, last = EVAL_SPLITS
        raise ConfigError(f"{key}={split}: use {', '.join(rest)} or {last}")
    return split
