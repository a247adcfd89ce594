"""Architecture search on a trained supernet: budgets, the search loop and its strategies,
results, resumable state. ``python -m ovo.search`` is :mod:`ovo.commands.search`.

The evaluation of candidates is the caller's: a search takes ``fitness(archs) -> scores`` and
calls it once per generation with all new candidates, so they can be scored in one batch.
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
