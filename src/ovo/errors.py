"""Errors a user can cause and fix. Commands print their message in one line (no traceback) and
exit with status 2; set ``OVO_DEBUG=1`` (or ``HYDRA_FULL_ERROR=1``) to see the traceback.

Anything else that escapes a command is a bug in ovo: it exits 1 with its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix (bad path, config, budget, file). The message says what to do."""


class DataError(UserError):
    """Missing, empty, malformed or corrupt dataset."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work (also a ``ValueError``, which it is)."""


class CheckpointError(UserError):
    """A file that is not an ovo checkpoint, or one from another space/model."""


class InfeasibleBudgetError(UserError):
    """A search constraint that no architecture of the space satisfies."""
