"""``compile=blocks``: one compiled graph per block shape whatever the arch, batch size or
layer; compiled and eager agree; checkpoints of compiled runs load everywhere."""

from __future__ import annotations

import random
import re
import shutil

import pytest
import torch
import torch._dynamo

from ovo.space import SearchSpace
from ovo.supernet import SuperViT, ViTConfig
from ovo.supernet.compile import compiled_graph_count
from ovo.training.distill import DistillConfig, label_loss, sample_step_archs, step_losses

from helpers import FAST, run_module

# 2 embed x 2 heads x 2 ratios = 8 block shapes; depths 1-3 and drop path make 12 distinct
# (layer, rate) pairs per shape that must not become graph constants
SPACE = SearchSpace([16, 24], [1, 2, 3], [1, 2], [1.0, 2.0], head_dim=8, name="micro")
CFG = ViTConfig(img_size=16, patch_size=8, num_classes=5, drop_path_rate=0.2)


def spy_on(compiled) -> list[tuple[int, int, int]]:
    """The block shape (embed, heads, MLP hidden) of every call that reaches the compiled
    function, from now on."""
    seen = []
    fn = compiled.fn

    def spy(x, w, *rest):
        seen.append((x.shape[-1], w.qkv_w.shape[0] // (3 * SPACE.head_dim), w.fc1_w.shape[0]))
        return fn(x, w, *rest)

    compiled.fn = spy
    return seen


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):  # a hit limit fails
        yield
    torch._dynamo.reset()


def test_200_training_steps_compile_one_graph_per_block_shape(device):
    torch.manual_seed(0)
    net = SuperViT(SPACE, CFG).to(device)
    compiled = net.compile_blocks(backend="aot_eager")  # dynamo's guards are the backend's
    seen = spy_on(compiled)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    rng = random.Random(0)
    shapes = len(SPACE.block_shapes())
    layers = 0
    net.train()
    for step in range(200):
        batch = 3 if step % 50 == 49 else 4  # a ragged last batch now and then
        x = torch.randn(batch, 3, 16, 16, device=device)
        y = torch.randint(0, 5, (batch,), device=device)
        archs = sample_step_archs(SPACE, DistillConfig(), rng)
        loss, _ = step_losses(net, x, y, archs, DistillConfig())
        layers += archs.teacher.depth + archs.students[0].depth
        opt.zero_grad()
        loss.backward()
        opt.step()
    # every layer of every step went through the compiled function, and the graphs the
    # un-warmed steps compiled are exactly one per block shape
    assert len(seen) == layers and set(seen) == set(SPACE.block_shapes()), set(seen)
    assert compiled.graphs == shapes, compiled.graphs
    seen.clear()
    net.eval()
    with torch.inference_mode():
        for batch in (5, 1, 7):  # evaluation batch sizes, a batch of one included
            for arch in (SPACE.min_arch, SPACE.max_arch, SPACE.sample(rng)):
                net(torch.randn(batch, 3, 16, 16, device=device), arch)
    # one evaluation graph per block shape evaluated, whatever the batch size
    assert compiled.graphs == shapes + len(set(seen)) <= 2 * shapes <= compiled.limit
    assert compiled_graph_count() == compiled.graphs


def test_warm_up_compiles_exactly_the_graphs_real_steps_use(device):
    torch.manual_seed(0)
    net = SuperViT(SPACE, CFG).to(device)
    compiled = net.compile_blocks(backend="aot_eager")
    shapes = len(SPACE.block_shapes())
    compiled.warm_up(net, 4, train=True, progress=False)
    compiled.warm_up(net, 4, train=False, progress=False)
    assert compiled.graphs == 2 * shapes and compiled.warmup_seconds > 0
    assert all(p.grad is None for p in net.parameters())  # warm-up leaves no gradient
    seen = spy_on(compiled)
    rng = random.Random(1)
    layers = 0
    net.train()
    for _ in range(20):
        archs = sample_step_archs(SPACE, DistillConfig(), rng)
        x = torch.randn(3, 3, 16, 16, device=device)
        (net(x, archs.teacher).sum() + net(x, archs.students[0]).sum()).backward()
        layers += archs.teacher.depth + archs.students[0].depth
    net.eval()
    with torch.inference_mode():
        for arch in (SPACE.min_arch, SPACE.max_arch, SPACE.sample(rng)):
            net(torch.randn(2, 3, 16, 16, device=device), arch)
            layers += arch.depth
    assert len(seen) == layers  # every layer ran through the warmed-up graphs
    assert compiled.graphs == 2 * shapes  # nothing compiled after the warm-up


def _cpp_compiler() -> str | None:
    return shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def test_the_recompile_limit_is_raised_only_while_compiled_blocks_run():
    config = torch._dynamo.config
    # dynamo's defaults (importing timm.optim raises the limit for the process: timm's kron.py)
    with config.patch(recompile_limit=8, accumulated_recompile_limit=256):
        net = SuperViT(SPACE, CFG)
        compiled = net.compile_blocks(backend="eager")
        seen = []
        fn = compiled.fn
        compiled.fn = lambda *a: seen.append(config.recompile_limit) or fn(*a)
        net(torch.randn(2, 3, 16, 16), SPACE.min_arch)
        assert seen and min(seen) >= compiled.limit > 8
        assert (config.recompile_limit, config.accumulated_recompile_limit) == (8, 256)


@pytest.mark.skipif(_cpp_compiler() is None, reason="inductor's CPU backend needs a C++ compiler")
def test_compiled_and_eager_agree_on_logits_and_gradients_inductor_cpu():
    space = SearchSpace([16], [1, 2, 3], [2], [2.0], head_dim=8, name="one-shape")  # 1 shape
    torch.manual_seed(0)
    eager = SuperViT(space, CFG)
    compiled_net = SuperViT(space, CFG)
    compiled_net.load_state_dict(eager.state_dict())
    compiled_net.compile_blocks(backend="inductor")
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 5, (4,))
    for arch in (space.max_arch, space.min_arch):
        outs = []
        for net in (eager, compiled_net):
            net.train().zero_grad(set_to_none=True)
            torch.manual_seed(1)  # the same drop-path masks (drawn outside the graph)
            logits = net(x, arch)
            label_loss(logits, y).backward()
            outs.append((logits.detach(), {n: p.grad for n, p in net.named_parameters()}))
        (le, ge), (lc, gc) = outs
        torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-5)
        for name, g in ge.items():
            if g is None:
                assert gc[name] is None, name
            else:
                torch.testing.assert_close(gc[name], g, rtol=1e-4, atol=1e-5, msg=name)
    with torch.inference_mode():
        torch.testing.assert_close(
            compiled_net.eval()(x, space.max_arch),
            eager.eval()(x, space.max_arch),
            rtol=1e-5,
            atol=1e-5,
        )


def test_a_compiled_run_writes_plain_checkpoints_and_the_commands_compile_too(tmp_path, capsys):
    overrides = [
        *FAST,
        "trainer.max_epochs=1",
        "model.drop_path_rate=0.1",
        "compile=blocks",
        "compile_options.backend=aot_eager",
        "compile_options.warmup=true",
    ]
    code = run_module("ovo.train", [*overrides, f"hydra.run.dir={tmp_path}/run"])
    out = capsys.readouterr().out
    assert code == 0 and "compiled blocks:" in out and "warm-up" in out, out[-2000:]
    # fit-time validation (Lightning: no_grad) reuses the warm-up's evaluation graphs
    graphs, shapes = re.search(
        r"compiled blocks: (\d+) graphs for (\d+) block shapes", out
    ).groups()
    assert int(graphs) <= 2 * int(shapes), out[-2000:]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert not any("_orig_mod" in k for k in state)
    args = [f"ckpt_path={ckpt}", "compile=blocks", "compile_options.backend=aot_eager"]
    args.append("compile_options.warmup=false")  # compiled on demand (train warmed up above)
    assert (
        run_module("ovo.evaluate", [*args, "arch=[min,max]", f"hydra.run.dir={tmp_path}/ev"]) == 0
    )
    assert "compiled blocks:" in capsys.readouterr().out
    search = [*args, f"paths.log_dir={tmp_path}", "population=4", "generations=2", "parents=2"]
    search += ["mutations=1", "crossovers=1", "wandb.enabled=false"]
    assert run_module("ovo.search", search) == 0


def test_compile_setting_is_checked(tmp_path, capsys):
    code = run_module("ovo.train", [*FAST, "compile=everything", f"hydra.run.dir={tmp_path}/r"])
    err = capsys.readouterr().err
    assert code == 2 and "compile='everything': use none or blocks" in err
    code = run_module(
        "ovo.train", [*FAST, "compile_options.backend=tvm", f"hydra.run.dir={tmp_path}/r"]
    )
    assert code == 2 and "compile_options.backend" in capsys.readouterr().err
