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


def one_line(err: BaseException) -> str:
    """``err``'s message on one line, as the commands print it: without a DataLoader worker's
    embedded traceback (workers re-raise the original exception type with 'Caught X in
    DataLoader worker ... Original Traceback ...'), the exception's name where the message alone
    would not say what went wrong (a ``KeyError``'s bare key), or the name alone if it is empty."""
    text = str(err).strip()
    if "Traceback" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        last = lines[-1]
        text = last.split(": ", 1)[1] if last.startswith(type(err).__name__ + ":") else last
    text = " ".join(text.split()) or type(err).__name__
    return f"{type(err).__name__}: {text}" if isinstance(err, KeyError | AssertionError) else text
