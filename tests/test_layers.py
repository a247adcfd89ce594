"""The layer order of ``pyproject.toml`` (``[tool.importlinter]``, checked by ``make lint``)
holds for the package, and each contract, broken once on a copy of it, fails ``lint-imports``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

LINT = Path(sys.executable).parent / "lint-imports"


def lint(src: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the repo's contracts on the ``ovo`` package under ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}  # before the editable install's path
    return subprocess.run(
        [str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "ovo", src / "ovo", ignore=shutil.ignore_patterns("__pycache__"))
    return src


def test_the_package_keeps_its_contracts(package_copy: Path) -> None:
    result = lint(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("supernet/model.py", "import ovo.training.module", "ovo's layers"),  # up the layers
        ("archspec.py", "import ovo.search.loop", "ovo's layers"),
        ("space.py", "import ovo.supernet", "ovo's layers"),
        ("errors.py", "import ovo.settings", "ovo's layers"),
        ("search/loop.py", "import ovo.ranking.stats", "ovo's layers"),  # independent siblings
        ("training/module.py", "import ovo.scoring", "ovo's layers"),
        ("commands/search.py", "import ovo.evaluation", "deprecated re-exports"),
    ],
)
def test_each_contract_broken_once_fails_the_lint(
    package_copy: Path, module: str, line: str, contract: str
) -> None:
    path = package_copy / "ovo" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint(package_copy)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if "BROKEN" in row]
    assert len(broken) == 1 and contract in broken[0], result.stdout
