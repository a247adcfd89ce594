"""Deprecated: moved to :mod:`ovo.training.module`; this path keeps working for now, with a warning."""

import warnings

from ovo.training.module import *  # noqa: F403

warnings.warn(
    "ovo.module moved to ovo.training.module: import it from there (this path will be removed)",
    DeprecationWarning,
    stacklevel=2,
)
