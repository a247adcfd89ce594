"""Architecture search on a trained supernet: budgets, the search loop and its strategies,
results, resumable state. ``python -m ovo.search`` is :mod:`ovo.commands.search`.

The evaluation of candidates is the caller's: a search takes ``fitness(archs) -> scores`` and
calls it once per generation with all new candidates, so they can be scored in one batch.

Multi-objective: ``strategy=nsga2`` (:mod:`ovo.search.nsga2`) and ``strategy=linas``
(:mod:`ovo.search.linas`) search the front of :class:`Objectives`; every search's front is
written by :mod:`ovo.search.front` (``front.json``, ``front.csv``: read with :func:`read_front`)
and ``results.json`` by :mod:`ovo.search.result` (:func:`write_results`, :func:`read_results`).
"""

from ovo.search.constraints import (
    Constraints,
    check_feasible,
    sample_feasible,
    space_span,
)
from ovo.search.front import Front, FrontMember, read_front, read_front_members
from ovo.search.linas import LinasProposal, LinasSettings
from ovo.search.loop import (
    MULTI_OBJECTIVE,
    PROPOSALS,
    EvolutionProposal,
    Fitness,
    OnGeneration,
    Proposal,
    RandomProposal,
    Search,
    SearchSettings,
    make_proposal,
)
from ovo.search.nsga2 import NSGA2Proposal
from ovo.search.objectives import Objectives
from ovo.search.pareto import pareto_front
from ovo.search.proposal import ProposalBase
from ovo.search.result import (
    EvaluatedArch,
    GenerationRecord,
    SearchReport,
    SearchResult,
    read_results,
    write_results,
)
from ovo.search.state import load_state

__all__ = [
    "MULTI_OBJECTIVE",
    "PROPOSALS",
    "Constraints",
    "EvaluatedArch",
    "EvolutionProposal",
    "Fitness",
    "Front",
    "FrontMember",
    "GenerationRecord",
    "LinasProposal",
    "LinasSettings",
    "NSGA2Proposal",
    "Objectives",
    "OnGeneration",
    "Proposal",
    "ProposalBase",
    "RandomProposal",
    "Search",
    "SearchReport",
    "SearchResult",
    "SearchSettings",
    "check_feasible",
    "load_state",
    "make_proposal",
    "pareto_front",
    "read_front",
    "read_front_members",
    "read_results",
    "sample_feasible",
    "space_span",
    "write_results",
]
