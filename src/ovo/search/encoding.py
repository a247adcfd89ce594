"""A fixed-length numeric encoding of the archs of one space, for accuracy predictors.

One-hot blocks (DyNAS-T's encoding): the embed dim, the depth, then for every layer position up
to the space's largest depth the heads and the MLP ratio of that layer, all zeros where the arch
has no such layer. Every arch of a space has the same length and no two archs share a code.
"""

from __future__ import annotations

from dataclasses import dataclass

from ovo.space import Arch, SearchSpace


@dataclass(frozen=True)
class ArchEncoding:
    """The one-hot encoding of the archs of ``space`` (see the module docstring)."""

    space: SearchSpace

    @property
    def width(self) -> int:
        s = self.space
        per_layer = len(s.num_heads) + len(s.mlp_ratio)
        return len(s.embed_dim) + len(s.depth) + s.depth[-1] * per_layer

    def encode(self, arch: Arch) -> list[float]:
        """The code of ``arch`` (an arch of the space)."""
        s = self.space
        s.validate(arch)
        code = [0.0] * self.width
        code[s.embed_dim.index(arch.embed_dim)] = 1.0
        at = len(s.embed_dim)
        code[at + s.depth.index(arch.depth)] = 1.0
        at += len(s.depth)
        per_layer = len(s.num_heads) + len(s.mlp_ratio)
        for i, (h, r) in enumerate(zip(arch.num_heads, arch.mlp_ratio)):
            base = at + i * per_layer
            code[base + s.num_heads.index(h)] = 1.0
            code[base + len(s.num_heads) + s.mlp_ratio.index(r)] = 1.0
        return code

    def encode_all(self, archs: list[Arch]) -> list[list[float]]:
        return [self.encode(a) for a in archs]
