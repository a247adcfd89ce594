"""Deprecated: moved to :mod:`ovo.training.distill`; this path keeps working for now, with a warning."""

import warnings

from ovo.training.distill import *  # noqa: F403

warnings.warn(
    "ovo.distill moved to ovo.training.distill: import it from there (this path will be removed)",
    DeprecationWarning,
    stacklevel=2,
)
