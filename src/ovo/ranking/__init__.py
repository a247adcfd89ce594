"""Ranking fidelity: does the supernet rank subnets as training them alone does?

:mod:`~ovo.ranking.stats` (rank correlations, bootstrap intervals, the free baselines and the
report; numpy only), :mod:`~ovo.ranking.standalone` (the recipe-keyed store of standalone
trainings) and :mod:`~ovo.ranking.plan` (what ``python -m ovo.rank`` trains, scores and tabulates).
"""

import importlib
import warnings


def __getattr__(name: str) -> object:
    # `ovo.ranking.<function>` was the statistics module before ovo.ranking became this package
    if name.startswith("__"):
        raise AttributeError(name)
    stats = importlib.import_module("ovo.ranking.stats")  # not `from . import`: it asks us
    if name.startswith("_") or not hasattr(stats, name):
        raise AttributeError(f"module 'ovo.ranking' has no attribute {name!r}")
    warnings.warn(
        f"ovo.ranking.{name} moved to ovo.ranking.stats.{name}: import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(stats, name)
