"""Deprecated: moved to :mod:`ovo.scoring`; this path keeps working for now, with a warning."""

import warnings

from ovo.scoring import *  # noqa: F403

warnings.warn(
    "ovo.evaluation moved to ovo.scoring: import it from there (this path will be removed)",
    DeprecationWarning,
    stacklevel=2,
)
