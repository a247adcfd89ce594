"""Slice gradients (ovo.supernet.grads) and DDP without a DistributedDataParallel wrapper."""

from __future__ import annotations

import random

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ovo.space import Arch, SearchSpace
from ovo.supernet import SuperViT, ViTConfig
from ovo.supernet.grads import SliceGrads
from ovo.training.ddp import average_gradients
from ovo.training.distill import (
    DistillConfig,
    StepArchs,
    label_loss,
    sample_step_archs,
    step_losses,
)

SPACE = SearchSpace([16, 24], [1, 2, 3], [1, 2], [1.0, 2.0], head_dim=8, name="micro")
CFG = ViTConfig(img_size=16, patch_size=8, num_classes=5, drop_path_rate=0.0)


def make_net(seed: int = 0, device: torch.device | str = "cpu") -> SuperViT:
    torch.manual_seed(seed)
    return SuperViT(SPACE, CFG).to(device)


def ovo_loss(net: SuperViT, x, y, teacher: Arch, student: Arch) -> torch.Tensor:
    """The training step's loss (``ovo.training.distill.step_losses``: teacher CE + student KD)."""
    return step_losses(net, x, y, StepArchs(teacher, (student,)), DistillConfig())[0]


def grads(net: SuperViT) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in net.named_parameters()}


def assert_same_grads(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] is None) == (b[name] is None), name
        if a[name] is not None:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=name)


def test_slice_gradients_equal_autograd_step_after_step(device):
    """Three OVO steps with different archs: in-place slice gradients (with the bounding-box
    re-zeroing of SliceGrads) equal autograd's slicing (a bare net), including which parameters
    have none."""
    fast, ref = make_net(device=device), make_net(device=device)
    buffers = SliceGrads(fast.parameters())
    rng = random.Random(0)
    x, y = torch.randn(6, 3, 16, 16, device=device), torch.randint(0, 5, (6,), device=device)
    shallow = Arch(24, (2,), (2.0,))  # leaves block 1 unused: its weights get no gradient
    for step in range(3):
        archs = sample_step_archs(SPACE, DistillConfig(), rng)
        teacher, student = archs.teacher, archs.students[0]
        if step == 1:
            teacher, student = shallow, Arch(16, (1,), (1.0,))
        buffers.zero_()
        ref.zero_grad(set_to_none=True)
        ovo_loss(fast, x, y, teacher, student).backward()
        ovo_loss(ref, x, y, teacher, student).backward()
        # same ops, one summation order difference (in-place adds vs autograd's buffer sum)
        assert_same_grads(grads(fast), grads(ref), atol=1e-6)
        if step == 1:
            assert fast.blocks[1].attn.qkv.weight.grad is None


def test_accumulation_and_autocast_equal_autograd(device):
    """Two micro-batches accumulated under bf16 autocast (the cast fused into the slice): the
    in-place gradients equal autograd's slicing of the same casts."""
    fast, ref = make_net(device=device), make_net(device=device)
    SliceGrads(fast.parameters())
    rng = random.Random(3)
    for _ in range(2):
        archs = sample_step_archs(SPACE, DistillConfig(), rng)
        x, y = torch.randn(4, 3, 16, 16, device=device), torch.randint(0, 5, (4,), device=device)
        for net in (fast, ref):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = ovo_loss(net, x, y, archs.teacher, archs.students[0])
            loss.backward()
    assert_same_grads(grads(fast), grads(ref), atol=1e-5)
    assert fast.blocks[0].attn.qkv.weight.grad.dtype == torch.float32


def test_zero_clears_every_written_region(device):
    net = make_net(device=device)
    buffers = SliceGrads(net.parameters())
    x, y = torch.randn(2, 3, 16, 16, device=device), torch.randint(0, 5, (2,), device=device)
    label_loss(net(x, SPACE.max_arch), y).backward()
    buffers.zero_()
    assert all(p.grad is None for p in net.parameters())
    assert all(float(b.abs().sum()) == 0.0 for b in buffers.buffers)
    label_loss(net(x, SPACE.min_arch), y).backward()
    # outside min's slice, both ways: rows of fc1 (MLP hidden 16 of 48), columns of proj (one
    # head of 8 wide, of two)
    w = net.blocks[0].mlp.fc1.weight
    assert w.grad is not None and float(w.grad[16:].abs().sum()) == 0.0
    assert float(w.grad[:, 16:].abs().sum()) == 0.0
    proj = net.blocks[0].attn.proj.weight
    assert proj.grad is not None and float(proj.grad[:, 8:].abs().sum()) == 0.0
    whole = SliceGrads(net.parameters(), zero_whole=True)  # takes the parameters over
    assert all(p.grad is None for p in net.parameters())
    label_loss(net(x, SPACE.min_arch), y).backward()
    w.grad[30:].fill_(float("nan"))  # e.g. gradient clipping by a NaN norm (fp16 overflow)
    whole.zero_()
    label_loss(net(x, SPACE.min_arch), y).backward()
    assert torch.isfinite(w.grad).all()


def _ddp_worker(rank: int, world: int, init_file: str, out: str, batch) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x, y, teacher, student = batch
    net = make_net()
    buffers = SliceGrads(net.parameters())
    half = x.shape[0] // world
    part = slice(rank * half, (rank + 1) * half)
    ovo_loss(net, x[part], y[part], teacher, student).backward()
    average_gradients(buffers)  # what SupernetDDPStrategy runs after a step's last backward
    if rank == 0:
        torch.save(grads(net), out)
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_gradients_equal_one_process_on_the_concatenated_batch(tmp_path):
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 5, (8,))
    teacher, student = Arch(24, (2, 2), (2.0, 1.0)), Arch(16, (1,), (1.0,))
    batch = (x, y, teacher, student)
    out = tmp_path / "grads.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out), batch), nprocs=2, join=True)
    reduced = torch.load(out, weights_only=True)
    net = make_net()
    SliceGrads(net.parameters())
    ovo_loss(net, x, y, teacher, student).backward()  # mean over 8 = mean of the halves' means
    assert_same_grads(reduced, grads(net), atol=1e-6)
    assert reduced["blocks.1.attn.qkv.weight"] is not None


def test_a_bare_supernet_has_autograd_gradients_torch_func_and_hooks_included():
    """No SliceGrads attached: gradients are autograd's. torch.func's functional gradient
    equals .backward()'s, a tensor hook sees the gradient; attaching SliceGrads switches the
    net to in-place gradients (no hook) and detaching gives autograd back."""
    from torch.func import functional_call, grad

    net = make_net()
    x, y = torch.randn(3, 3, 16, 16), torch.randint(0, 5, (3,))
    arch = Arch(24, (2, 1), (2.0, 1.0))
    params = {n: p.detach() for n, p in net.named_parameters()}
    functional = grad(lambda ps: label_loss(functional_call(net, ps, (x, arch)), y))(params)
    hooked = {}
    w = net.blocks[0].attn.qkv.weight
    w.register_hook(lambda g: hooked.setdefault("qkv", None if g is None else g.clone()))
    label_loss(net(x, arch), y).backward()
    for name, p in net.named_parameters():
        expected = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(functional[name], expected, rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(hooked["qkv"], w.grad, rtol=0, atol=0)
    net.zero_grad(set_to_none=True)
    hooked.clear()
    buffers = SliceGrads(net.parameters())
    label_loss(net(x, arch), y).backward()
    # written in place, into the buffer: autograd hands the hook no gradient
    assert hooked.get("qkv") is None and w.grad is buffers.views[w]
    buffers.detach()
    net.zero_grad(set_to_none=True)
    hooked.clear()
    label_loss(net(x, arch), y).backward()
    assert hooked["qkv"] is not None and w.grad is not None and SliceGrads.of(w) is None


def test_torch_ddp_path_still_sees_gradients():
    """Without SliceGrads (what torch's DDP gets) every used weight's gradient arrives
    through autograd: a post-accumulate hook fires for it."""
    net = make_net()
    seen = set()

    def handed_over(name: str):  # DDP's reducer reads the gradient autograd hands over
        return lambda g: seen.add(name if g is not None else f"{name}: no gradient")

    for name, p in net.named_parameters():
        p.register_post_accumulate_grad_hook(lambda q, n=name: q.grad is not None and seen.add(n))
        p.register_hook(handed_over(name))
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 5, (2,))
    label_loss(net(x, SPACE.min_arch), y).backward()
    used = {n for n, p in net.named_parameters() if p.grad is not None}
    assert used and seen == used
