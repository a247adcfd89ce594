"""The weight-sharing ViT supernet (AutoFormer-style weight entanglement)."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from ovo.space import Arch, ArchError, SearchSpace, mlp_hidden
from ovo.supernet.compile import CompiledBlocks
from ovo.supernet.config import ViTConfig
from ovo.supernet.costs import CostModel
from ovo.supernet.layers import (
    ElasticBlock,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticPatchEmbed,
    block_forward,
    leads,
)


class SuperViT(nn.Module):
    """A ViT whose every subnet of ``space`` uses the leading slices of shared weights.

    ``forward(x, arch)`` runs the subnet ``arch``; the arch is an argument, never module state.
    Parameter names follow timm's ``VisionTransformer`` so checkpoints read naturally. Gradients
    are autograd's unless a :class:`~ovo.supernet.grads.SliceGrads` is attached to the
    parameters (training does), which writes them slice by slice in place.
    """

    def __init__(self, space: SearchSpace, cfg: ViTConfig | None = None) -> None:
        super().__init__()
        self.space = space
        self.cfg = cfg = cfg or ViTConfig()
        self.cost = CostModel(cfg, space.head_dim)
        e_max, d_max = space.embed_dim[-1], space.depth[-1]
        self.patch_embed = ElasticPatchEmbed(cfg.patch_size, cfg.in_chans, e_max)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e_max))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, e_max))
        # Drop-path rates grow linearly over the *max* depth, so layer i keeps its rate in
        # every subnet (AutoFormer's convention); export copies the same per-layer rates.
        self.drop_path_rates = [cfg.drop_path_rate * i / max(d_max - 1, 1) for i in range(d_max)]
        self.blocks = nn.ModuleList(
            ElasticBlock(
                e_max,
                space.num_heads[-1],
                space.max_mlp_hidden,
                space.head_dim,
                drop_path=rate,
                eps=cfg.norm_eps,
            )
            for rate in self.drop_path_rates
        )
        if cfg.per_depth_norm:
            self.norms = nn.ModuleDict(
                {str(d): ElasticLayerNorm(e_max, cfg.norm_eps) for d in space.depth}
            )
        else:
            self.norm = ElasticLayerNorm(e_max, cfg.norm_eps)
        self.head = ElasticLinear(e_max, cfg.num_classes)
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        # blocks run eager, or compiled once per block shape after compile_blocks()
        self.compiled: CompiledBlocks | None = None

    def compile_blocks(self, backend: str = "inductor", mode: str | None = None) -> CompiledBlocks:
        """Run every block through ``torch.compile`` once per block shape (embed dim x heads x
        MLP hidden) instead of once per arch (as ``nn.Module.compile`` does for the whole
        module); returns the :class:`~ovo.supernet.compile.CompiledBlocks` (graph count,
        warm-up). Weights and checkpoints are unchanged."""
        self.compiled = CompiledBlocks(self.space, backend=backend, mode=mode)
        return self.compiled

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def check_arch(self, arch: Arch) -> None:
        """Raise if ``arch`` does not fit in the allocated weights (cheap; not space membership)."""
        s = self.space
        if (
            arch.embed_dim > s.embed_dim[-1]
            or arch.depth > s.depth[-1]
            or max(arch.num_heads) > s.num_heads[-1]
            or max(arch.mlp_hidden(i) for i in range(arch.depth)) > s.max_mlp_hidden
        ):
            raise ArchError(
                f"arch {arch.short()} does not fit supernet of space '{s.name}' "
                f"(max {s.max_arch.short()})"
            )

    def norm_key(self, depth: int) -> str:
        """State-dict prefix of the final norm a depth-``depth`` subnet uses."""
        return f"norms.{depth}" if self.cfg.per_depth_norm else "norm"

    def final_norm(self, depth: int) -> ElasticLayerNorm:
        """The final norm of a depth-``depth`` subnet (its own with ``per_depth_norm``)."""
        return self.norms[str(depth)] if self.cfg.per_depth_norm else self.norm

    def forward_features(self, x: Tensor, arch: Arch) -> Tensor:
        e = arch.embed_dim
        x = self.patch_embed(x, e)
        cls, pos = leads(
            [(self.cls_token, (1, 1, e), None), (self.pos_embed, (1, x.shape[1] + 1, e), None)]
        )
        assert cls is not None and pos is not None
        x = torch.cat((cls.expand(x.shape[0], -1, -1), x), dim=1) + pos
        compiled = self.compiled
        # compiled blocks take drop-path masks in every layer (a layer's rate is data to them)
        always_masks = compiled is not None and self.cfg.drop_path_rate > 0
        with nullcontext() if compiled is None else compiled.running():  # once per forward
            for block, h, r in zip(self.blocks, arch.num_heads, arch.mlp_ratio):
                x = block(x, h, mlp_hidden(e, r), compiled or block_forward, always_masks)
        if self.cfg.global_pool == "token":
            x = self.final_norm(arch.depth)(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False, depth: int | None = None) -> Tensor:
        """Pooling and classifier; with ``global_pool='avg'`` also the final norm, which needs
        the subnet's ``depth`` when the supernet has one norm per depth."""
        if self.cfg.global_pool == "avg":
            if depth is None and self.cfg.per_depth_norm:
                raise ValueError("forward_head needs depth= with per_depth_norm and avg pooling")
            norm = self.norm if depth is None else self.final_norm(depth)
            x = norm(x[:, 1:].mean(dim=1))  # timm's fc_norm after pooling
        else:
            x = x[:, 0]
        return x if pre_logits else self.head(x, self.cfg.num_classes)

    def forward(self, x: Tensor, arch: Arch) -> Tensor:
        self.check_arch(arch)
        return self.forward_head(self.forward_features(x, arch), depth=arch.depth)

    # Convenience so callers need not reach into .cost
    def num_params(self, arch: Arch) -> int:
        return self.cost.params(arch)

    def num_macs(self, arch: Arch) -> int:
        return self.cost.macs(arch)
