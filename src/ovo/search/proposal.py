"""The interface between :class:`~ovo.search.loop.Search` and a strategy.

A strategy proposes each next generation from everything scored so far; the search scores it in
one batch, records it and saves the state. A proposal may keep state of its own (LINAS keeps the
predictions it made for the batch being scored): :meth:`Proposal.state` is saved with the search
state after every generation and given back by :meth:`Proposal.restore` on resume, so a resumed
run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ovo.space import Arch

if TYPE_CHECKING:
    from ovo.search.loop import Search
    from ovo.search.result import EvaluatedArch


class Proposal(Protocol):
    """How a strategy proposes the next generation from everything evaluated so far."""

    strategy: ClassVar[str]

    def hyper(self) -> dict[str, Any]:
        """The settings this strategy's trajectory depends on (part of the resume fingerprint)."""
        ...

    def propose(self, search: Search) -> list[Arch]: ...

    def initial_size(self, search: Search) -> int:
        """How many archs generation 0 scores."""
        ...

    def observe(self, search: Search, generation: int, new: list[EvaluatedArch]) -> None:
        """Called once a generation is scored and recorded, before :meth:`propose`."""
        ...

    def state(self) -> dict[str, Any] | None:
        """The proposal's own resumable state (``None``: it has none)."""
        ...

    def restore(self, state: Mapping[str, Any] | None) -> None:
        """Start from ``state`` (``None``: from scratch)."""
        ...

    def log(self) -> list[dict[str, Any]]:
        """Per-generation records of the strategy's own (e.g. LINAS's predictor quality)."""
        ...


class ProposalBase:
    """The hooks a proposal without state of its own needs (generation 0: ``population``)."""

    strategy: ClassVar[str] = ""

    def initial_size(self, search: Search) -> int:
        return search.config.population

    def observe(self, search: Search, generation: int, new: list[EvaluatedArch]) -> None:
        return None

    def state(self) -> dict[str, Any] | None:
        return None

    def restore(self, state: Mapping[str, Any] | None) -> None:
        return None

    def log(self) -> list[dict[str, Any]]:
        return []
