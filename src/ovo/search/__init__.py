"""Architecture search on a trained supernet: budgets, evolution / random search, results.

The evaluation of candidates is the caller's: a search takes ``fitness(archs) -> scores`` and
calls it once per generation with all new candidates, so they can be scored in one batch.
"""

from ovo.search.constraints import (
    Constraints,
    check_feasible,
    format_count,
    parse_count,
    sample_feasible,
    space_span,
)
from ovo.search.evolution import (
    STRATEGIES,
    EvolutionSearch,
    Fitness,
    OnGeneration,
    RandomSearch,
    Search,
    make_search,
)
from ovo.search.pareto import pareto_front
from ovo.search.result import EvaluatedArch, GenerationRecord, SearchResult
from ovo.search.state import atomic_write_json, load_state

__all__ = [
    "STRATEGIES",
    "Constraints",
    "EvaluatedArch",
    "EvolutionSearch",
    "Fitness",
    "GenerationRecord",
    "OnGeneration",
    "RandomSearch",
    "Search",
    "SearchResult",
    "atomic_write_json",
    "check_feasible",
    "format_count",
    "load_state",
    "make_search",
    "pareto_front",
    "parse_count",
    "sample_feasible",
    "space_span",
]
