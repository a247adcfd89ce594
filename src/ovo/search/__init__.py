"""Architecture search on a trained supernet: the search loop and its strategies
(:mod:`~ovo.search.loop`), how candidates are scored (:mod:`~ovo.search.fitness`: every
candidate on the whole fitness split, or successive halving), results
(:mod:`~ovo.search.result`) and the resumable state (:mod:`~ovo.search.state`); the budget box
every candidate stays in is :mod:`ovo.budget` (re-exported here). ``python -m ovo.search`` is
:mod:`ovo.commands.search`.

The scoring itself is the caller's: a :class:`Search` takes a race (``FullFitness`` or
``Halving``) wrapping the caller's scoring function, and asks it once per generation for all new
candidates, so they are scored in one batch (sharded over DDP ranks by the caller).

Multi-objective: ``strategy=nsga2`` (:mod:`ovo.search.nsga2`) and ``strategy=linas``
(:mod:`ovo.search.linas`) search the front of :class:`Objectives`; every search's front is
written by :mod:`ovo.search.front` (``front.json``, ``front.csv``: read with :func:`read_front`)
and ``results.json`` by :mod:`ovo.search.result` (:func:`write_results`, :func:`read_results`).
"""

from ovo.budget import (
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
