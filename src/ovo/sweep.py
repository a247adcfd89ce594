"""Deprecated: moved to :mod:`ovo.training.sweep`; this path keeps working for now, with a warning."""

import warnings

from ovo.training.sweep import *  # noqa: F403

warnings.warn(
    "ovo.sweep moved to ovo.training.sweep: import it from there (this path will be removed)",
    DeprecationWarning,
    stacklevel=2,
)
