"""Run a part of the bench in a fresh Python process (no pickled code: it works however the
bench was loaded)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent


def python_argv(code: str) -> list[str]:
    """``python -c code`` with this package importable (run it with ``cwd=REPO``)."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(BENCH)!r}); {code}"]
