"""How often training runs each layer and each weight slice of the supernet (a diagnosis aid).

Under weight entanglement a weight gets a gradient in a step exactly when one of the step's
subnets runs it: layer ``i`` when the subnet is deeper than ``i``; embedding columns ``[a, b)``
when its embed dim reaches ``b``; head ``h`` of layer ``i`` when that layer runs more than ``h``
heads; MLP hidden units ``[a, b)`` of layer ``i`` when that layer's hidden width reaches ``b``.
:class:`UsageCounter` counts those passes from the archs a step trains. Training counts them per
epoch with ``usage_counts=true`` (off by default; the counts go to ``usage.json`` in the run
directory and to the logger, never into the checkpoint). The expectation in closed form is
:func:`ovo.training.distill.layer_uses_per_step`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ovo.space import Arch, SearchSpace, mlp_hidden


def _intervals(edges: Iterable[int]) -> list[tuple[int, int]]:
    cuts = sorted({0, *edges})
    return list(zip(cuts[:-1], cuts[1:]))


class UsageCounter:
    """Passes through each layer and weight slice of ``space``'s supernet, over the archs added."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.embed_slices = _intervals(space.embed_dim)
        self.mlp_slices = _intervals(
            mlp_hidden(e, r) for e in space.embed_dim for r in space.mlp_ratio
        )
        self.max_heads = space.num_heads[-1]
        self.reset()

    def reset(self) -> None:
        depth = self.space.depth[-1]
        self.steps = 0
        self.passes = 0
        self.layers = [0] * depth
        self.embed = [0] * len(self.embed_slices)
        self.heads = [[0] * self.max_heads for _ in range(depth)]
        self.mlp = [[0] * len(self.mlp_slices) for _ in range(depth)]

    def add_step(self, archs: Iterable[Arch]) -> None:
        """Count one training step that ran ``archs`` (its teacher and students)."""
        self.steps += 1
        for arch in archs:
            self.passes += 1
            for j, (_, end) in enumerate(self.embed_slices):
                self.embed[j] += arch.embed_dim >= end
            for i in range(arch.depth):
                self.layers[i] += 1
                for h in range(arch.num_heads[i]):
                    self.heads[i][h] += 1
                width = arch.mlp_hidden(i)
                for j, (_, end) in enumerate(self.mlp_slices):
                    self.mlp[i][j] += width >= end

    def as_dict(self) -> dict[str, Any]:
        """The counts, with the slices they refer to named (``"64:96"``: columns 64 to 95)."""
        return {
            "steps": self.steps,
            "passes": self.passes,
            "layers": list(self.layers),
            "embed": {f"{a}:{b}": n for (a, b), n in zip(self.embed_slices, self.embed)},
            "heads": [list(row) for row in self.heads],
            "mlp": [{f"{a}:{b}": n for (a, b), n in zip(self.mlp_slices, row)} for row in self.mlp],
        }
