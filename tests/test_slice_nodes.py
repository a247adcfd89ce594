"""Fewer ops per step, same numbers: a supernet's weights are sliced one autograd node per block
(not one per weight) and ``SliceGrads.zero_`` clears a mostly written buffer in one kernel.
Checked bit for bit against the previous path (one node per weight, one zero per parameter)."""

from __future__ import annotations

import random

import pytest
import torch

from ovo.space import SearchSpace
from ovo.supernet import SuperViT, ViTConfig, grads, layers
from ovo.supernet.grads import SliceGrads
from ovo.training.distill import DistillConfig, StepArchs, step_losses

SPACE = SearchSpace([16, 24], [2, 3], [1, 2], [1.0, 2.0], head_dim=8, name="micro")
CFG = ViTConfig(img_size=16, patch_size=8, num_classes=5, drop_path_rate=0.0)


def per_weight_leads(specs):
    """The previous slicing: one autograd node per weight."""
    return [None if s is None else layers.lead(*s) for s in specs]


def train(steps: int, amp: bool) -> tuple[list[torch.Tensor], dict[str, torch.Tensor], int]:
    """Logits of every step, the weights after ``steps`` OVO steps (one teacher, two
    students: three uses of shared weights per step) with AdamW, and the slicing nodes of the
    first step's graph."""
    torch.manual_seed(0)
    net = SuperViT(SPACE, CFG)
    slice_grads = SliceGrads(net.parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    rng, logits, nodes = random.Random(0), [], 0
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 5, (4,))
    for _ in range(steps):
        archs = StepArchs(SPACE.sample(rng), (SPACE.sample(rng), SPACE.sample(rng)))
        slice_grads.zero_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss, _ = step_losses(net, x, y, archs, DistillConfig())
            logits.append(net(x, archs.teacher).detach().float())
        nodes = nodes or slice_nodes(loss)
        loss.backward()
        opt.step()
    return logits, {n: p.detach().clone() for n, p in net.named_parameters()}, nodes


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_fused_slices_and_whole_buffer_zero_are_bit_exact(monkeypatch, amp):
    fast_logits, fast, fast_nodes = train(4, amp)
    with monkeypatch.context() as m:
        m.setattr(layers, "leads", per_weight_leads)
        m.setattr("ovo.supernet.model.leads", per_weight_leads)
        m.setattr(grads, "_volume", lambda sizes: 0)  # never "mostly written": zero per box
        ref_logits, ref, ref_nodes = train(4, amp)
    assert fast_nodes < ref_nodes / 4  # the two paths really differ
    assert all(torch.equal(a, b) for a, b in zip(fast_logits, ref_logits))
    assert fast.keys() == ref.keys()
    for name in fast:
        assert torch.equal(fast[name], ref[name]), name


def slice_nodes(loss: torch.Tensor) -> int:
    """The slicing nodes in ``loss``'s autograd graph."""
    seen, todo, count = set(), [loss.grad_fn], 0
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        count += type(node).__name__ == "_LeadingSlicesBackward"
        todo.extend(f for f, _ in node.next_functions)
    return count


def test_one_slicing_node_per_block_and_zero_clears_everything_written():
    torch.manual_seed(0)
    net = SuperViT(SPACE, CFG)
    slice_grads = SliceGrads(net.parameters())
    arch = SPACE.max_arch
    loss = net(torch.randn(2, 3, 16, 16), arch).sum()
    # patch embed, cls + pos, each block, final norm, head
    assert slice_nodes(loss) == arch.depth + 4
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    slice_grads.zero_()  # the max arch writes all of the buffer: zeroed whole
    assert all(p.grad is None for p in net.parameters())
    assert all(not b.any() for b in slice_grads.buffers)
