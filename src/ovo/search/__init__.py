"""Architecture search on a trained supernet: the search loop and its strategies
(:mod:`~ovo.search.loop`), how candidates are scored (:mod:`~ovo.search.fitness`: every
candidate on the whole fitness split, or successive halving), results
(:mod:`~ovo.search.result`) and the resumable state (:mod:`~ovo.search.state`); the budget box
every candidate stays in is :mod:`ovo.budget` (re-exported here). ``python -m ovo.search`` is
:mod:`ovo.commands.search`.

The scoring itself is the caller's: a :class:`Search` takes a race (``FullFitness`` or
``Halving``) wrapping the caller's scoring function, and asks it once per generation for all new
candidates, so they are scored in one batch (sharded over DDP ranks by the caller).
"""

from ovo.budget import (
    Constraints,
    check_feasible,
    sample_feasible,
    space_span,
)
from ovo.search.loop import (
    PROPOSALS,
    EvolutionProposal,
    Fitness,
    OnGeneration,
    Proposal,
    RandomProposal,
    Search,
    SearchSettings,
)
from ovo.search.pareto import pareto_front
from ovo.search.result import EvaluatedArch, GenerationRecord, SearchResult
from ovo.search.state import load_state

__all__ = [
    "PROPOSALS",
    "Constraints",
    "EvaluatedArch",
    "EvolutionProposal",
    "Fitness",
    "GenerationRecord",
    "OnGeneration",
    "Proposal",
    "RandomProposal",
    "Search",
    "SearchResult",
    "SearchSettings",
    "check_feasible",
    "load_state",
    "pareto_front",
    "sample_feasible",
    "space_span",
]
