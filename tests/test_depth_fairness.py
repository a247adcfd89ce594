"""The switches that train deep layers as often as shallow ones (issue 20), and the counters that
measure how often each layer and weight slice is trained.

Each switch is checked to change what is sampled or trained exactly as documented; the closed
form of :func:`ovo.training.distill.layer_uses_per_step` is checked against the sampler itself.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from fractions import Fraction
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from ovo.commands.train import build_module, train
from ovo.errors import ConfigError
from ovo.export.timm_vit import export_subnet
from ovo.space import Arch, load_space
from ovo.supernet import SuperViT, ViTConfig
from ovo.training.distill import DistillConfig, arch_rng, layer_uses_per_step, sample_step_archs
from ovo.training.optim import inverse_usage_scales
from ovo.training.usage import UsageCounter

from helpers import FAST, compose_cfg

NANO = load_space("nano")  # depth 4, 5, 6; embed 64, 96, 128
VARIANTS = [
    {},
    {"teacher_depth": "max"},
    {"student_depth": "linear"},
    {"teacher_depth": "max", "student_depth": "linear"},
    {"teacher": "larger"},
    {"teacher": "larger", "teacher_depth": "max"},
    {"teacher": "sandwich", "student_depth": "linear"},
    {"teacher": "max"},
    {"teacher": "none", "subnets_per_step": 2, "student_depth": "linear"},
]


def _step_archs(cfg: DistillConfig, steps: int, seed: int = 0):
    for step in range(steps):
        archs = sample_step_archs(NANO, cfg, arch_rng(seed, step))
        yield [*([archs.teacher] if archs.teacher else []), *archs.students]


def test_closed_form_uses_of_the_default_are_the_documented_ones():
    # README: layers 1-4 in 2 subnets per step, layer 5 in 1 + 2/3, layer 6 in 1/2 + 1/3
    uses = layer_uses_per_step(NANO, DistillConfig())
    assert [Fraction(u).limit_denominator(12) for u in uses] == [
        2,
        2,
        2,
        2,
        Fraction(5, 3),
        Fraction(1, 2) + Fraction(1, 3),
    ]
    full = layer_uses_per_step(NANO, DistillConfig(teacher_depth="max"))
    assert full[-1] == pytest.approx(1 + 1 / 3) and full[:5] == uses[:5]
    linear = layer_uses_per_step(NANO, DistillConfig(student_depth="linear"))
    assert linear[-1] == pytest.approx(0.5 + 0.5) and linear[4] == pytest.approx(1 + 5 / 6)


@pytest.mark.parametrize(
    "kwargs", VARIANTS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "default"
)
def test_closed_form_uses_match_the_sampler(kwargs):
    cfg = DistillConfig(**kwargs)
    steps = 4000
    counter = UsageCounter(NANO)
    for archs in _step_archs(cfg, steps):
        counter.add_step(archs)
    expected = layer_uses_per_step(NANO, cfg)
    # a layer's count in one step is a sum of one Bernoulli per subnet: variance <= subnets / 4
    subnets = counter.passes / steps
    sigma = math.sqrt(subnets / 4 / steps)
    for got, want in zip(counter.layers, expected):
        assert abs(got / steps - want) < 5 * sigma, (counter.layers, expected)


def test_teacher_depth_max_makes_every_sampled_teacher_full_depth():
    default = Counter(a[0].depth for a in _step_archs(DistillConfig(), 300))
    full = [a[0] for a in _step_archs(DistillConfig(teacher_depth="max"), 300)]
    assert default[5] > 0 and default[6] > 0  # the pool's depths are 5 and 6
    assert Counter(t.depth for t in full) == {6: 300}
    assert {t.embed_dim for t in full} == {96, 128}  # the other genes still come from the pool
    larger = list(_step_archs(DistillConfig(teacher="larger", teacher_depth="max"), 300))
    assert all(t.depth == 6 and t.embed_dim >= s.embed_dim for t, s in larger)


def test_student_depth_linear_draws_depth_k_with_weight_k():
    n = 6000
    for rule, probs in (("uniform", (1 / 3, 1 / 3, 1 / 3)), ("linear", (1 / 6, 2 / 6, 3 / 6))):
        depths = Counter(a[-1].depth for a in _step_archs(DistillConfig(student_depth=rule), n))
        for d, p in zip((4, 5, 6), probs):
            sigma = math.sqrt(p * (1 - p) / n)
            assert abs(depths[d] / n - p) < 4 * sigma, (rule, depths)


def test_uniform_students_draw_what_they_always_drew():
    # the default must not consume the arch RNG differently from before the switch existed
    rng, ref = random.Random(7), random.Random(7)
    for _ in range(50):
        arch = NANO.sample(rng)
        depth = ref.choice(NANO.depth)
        want = Arch(
            ref.choice(NANO.embed_dim),
            tuple(ref.choice(NANO.num_heads) for _ in range(depth)),
            tuple(ref.choice(NANO.mlp_ratio) for _ in range(depth)),
        )
        assert arch == want


def test_distill_switches_refuse_bad_values():
    with pytest.raises(ConfigError, match="teacher_depth='deepest'"):
        DistillConfig(teacher_depth="deepest")
    with pytest.raises(ConfigError, match="student_depth='square'"):
        DistillConfig(student_depth="square")
    with pytest.raises(ConfigError, match="applies to teacher=sampled or larger"):
        DistillConfig(teacher="sandwich", teacher_depth="max")


# ---- the usage counters ---------------------------------------------------------------------
def test_usage_counts_equal_what_the_blocks_ran_in_a_seeded_fit(tmp_path):
    """usage.json's counts against forward hooks on the supernet's blocks: an independent count
    of which layer ran, at which embed dim, with how many heads and which MLP width."""
    cfg = compose_cfg("train", FAST + ["usage_counts=true"], tmp_path)
    dm = instantiate(cfg.data)
    module = build_module(cfg, dm)
    space = module.space
    hooked = UsageCounter(space)  # filled from the hooks, not from the sampled archs
    calls: list[tuple[int, int, int, int]] = []

    def hook(index):
        def record(block, args, output):
            if block.training:
                x, heads, hidden = args[0], args[1], args[2]
                calls.append((index, x.shape[-1], heads, hidden))

        return record

    for i, block in enumerate(module.net.blocks):
        block.register_forward_hook(hook(i))
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    written = json.loads((tmp_path / "usage.json").read_text())["epochs"]
    assert [e["epoch"] for e in written] == [0, 1]
    # split the hook calls into epochs and passes (a pass starts at layer 0)
    steps_per_epoch = written[0]["steps"]
    passes = []
    for index, e, heads, hidden in calls:
        if index == 0:
            passes.append([])
        passes[-1].append((e, heads, hidden))
    per_epoch = written[0]["passes"]
    assert len(passes) == per_epoch + written[1]["passes"]
    for epoch, chunk in enumerate((passes[:per_epoch], passes[per_epoch:])):
        hooked.reset()
        for p in chunk:
            e = p[0][0]
            ratios = [
                next(r for r in space.mlp_ratio if int(r * e) == hidden) for _, _, hidden in p
            ]
            hooked.add_step([Arch(e, [h for _, h, _ in p], ratios)])
        got = written[epoch]
        want = hooked.as_dict()
        for key in ("layers", "embed", "heads", "mlp", "passes"):
            assert got[key] == want[key], key
        assert got["steps"] == steps_per_epoch
    assert sum(written[0]["layers"][:4]) == 4 * written[0]["passes"]  # depth >= 4 always
    assert "usage" not in json.dumps(list(module.state_dict()))


def test_usage_counter_slices():
    counter = UsageCounter(NANO)
    counter.add_step([Arch(96, (2, 4, 3, 2), (2.0, 4.0, 3.0, 2.0))])
    d = counter.as_dict()
    assert d["embed"] == {"0:64": 1, "64:96": 1, "96:128": 0}
    assert d["layers"] == [1, 1, 1, 1, 0, 0]
    assert d["heads"][1] == [1, 1, 1, 1] and d["heads"][0] == [1, 1, 0, 0]
    # layer 1 runs 96 * 4 = 384 hidden units: every slice up to 384, none above
    assert [n for k, n in d["mlp"][1].items() if int(k.split(":")[1]) <= 384] == [1] * sum(
        int(k.split(":")[1]) <= 384 for k in d["mlp"][1]
    )
    assert all(n == 0 for k, n in d["mlp"][1].items() if int(k.split(":")[1]) > 384)


# ---- per-layer learning rates ---------------------------------------------------------------
def _optimizer(tmp_path, *overrides):
    """The optimizer ``configure_optimizers`` returns, outside a fit (a stand-in trainer gives
    what it reads: batch size, devices, epochs and steps)."""
    base = [a for a in FAST if "scheduler=none" not in overrides or "scheduler." not in a]
    cfg = compose_cfg("train", base + list(overrides), tmp_path)
    dm = instantiate(cfg.data)
    module = build_module(cfg, dm)
    module._trainer = SimpleNamespace(
        datamodule=dm,
        world_size=1,
        accumulate_grad_batches=1,
        max_epochs=2,
        estimated_stepping_batches=10,
    )
    return module, module.configure_optimizers()["optimizer"]


@pytest.mark.parametrize("scheduler", ["cosine", "none"])
def test_inverse_usage_scales_each_blocks_learning_rate(tmp_path, scheduler):
    module, opt = _optimizer(
        tmp_path, "optimizer.layer_lr_scale=inverse_usage", f"scheduler={scheduler}"
    )
    plain, base = _optimizer(tmp_path / "plain", f"scheduler={scheduler}")
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    base_lr = {g["lr"] for g in base.param_groups}
    assert len(base_lr) == 1
    (base_lr,) = base_lr
    scales = inverse_usage_scales(layer_uses_per_step(module.space, module.distill_cfg))
    assert scales == pytest.approx([1, 1, 1, 1, 2 / (5 / 3), 2 / (5 / 6)])
    for i, block in enumerate(module.net.blocks):
        for p in block.parameters():
            assert lr_of[id(p)] == pytest.approx(base_lr * scales[i], rel=1e-12)
    for name, p in module.net.named_parameters():
        if not name.startswith("blocks."):
            assert lr_of[id(p)] == pytest.approx(base_lr, rel=1e-12), name
    # weight decay groups are timm's: none on biases, norms, pos_embed, cls_token
    wd_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    base_wd = {id(p): g["weight_decay"] for g in base.param_groups for p in g["params"]}
    for (_, p), (_, q) in zip(module.net.named_parameters(), plain.net.named_parameters()):
        assert wd_of[id(p)] == base_wd[id(q)]


def test_inverse_usage_is_capped():
    assert inverse_usage_scales([2.0, 1.0, 0.1, 0.0]) == [1.0, 2.0, 4.0, 4.0]


# ---- one final norm per depth -----------------------------------------------------------------
@pytest.mark.parametrize("pool", ["token", "avg"])
def test_per_depth_norm_trains_and_exports_the_subnets_own_norm(pool):
    torch.manual_seed(0)
    cfg = ViTConfig(
        img_size=32, patch_size=8, num_classes=10, global_pool=pool, per_depth_norm=True
    )
    net = SuperViT(NANO, cfg)
    assert sorted(k for k in net.state_dict() if "norms." in k and "blocks" not in k) == [
        f"norms.{d}.{w}" for d in (4, 5, 6) for w in ("bias", "weight")
    ]
    assert not hasattr(net, "norm")
    with torch.no_grad():  # distinct norms, so using the wrong one shows in the logits
        for norm in net.norms.values():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    arch = Arch(96, (2, 3, 4, 2, 3), (2.0, 3.0, 4.0, 2.0, 3.0))
    x = torch.randn(4, 3, 32, 32)
    net(x, arch).sum().backward()
    with torch.no_grad():
        for p in net.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    after = net.state_dict()
    for d in (4, 6):  # the other depths' norms are untouched, bit for bit
        for w in ("weight", "bias"):
            assert torch.equal(after[f"norms.{d}.{w}"], before[f"norms.{d}.{w}"])
    assert not torch.equal(after["norms.5.weight"], before["norms.5.weight"])
    net.eval()
    model = export_subnet(net, arch).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x, arch), rtol=1e-5, atol=1e-5)
        other = Arch(96, (2, 3, 4, 2), (2.0, 3.0, 4.0, 2.0))
        assert not torch.allclose(export_subnet(net, other).eval()(x), net(x, arch))


def test_one_shared_norm_is_still_the_default():
    net = SuperViT(NANO, ViTConfig(img_size=32, patch_size=8, num_classes=10))
    assert "norm.weight" in net.state_dict() and not hasattr(net, "norms")


def test_train_refuses_inverse_usage_with_a_fixed_arch(tmp_path):
    with pytest.raises(ConfigError, match="fixed_arch trains every layer"):
        _optimizer(
            tmp_path, "distill=none", "fixed_arch=max", "optimizer.layer_lr_scale=inverse_usage"
        )


def test_a_variant_trains_end_to_end(tmp_path):
    cfg = compose_cfg(
        "train",
        FAST
        + [
            "distill.teacher_depth=max",
            "distill.student_depth=linear",
            "optimizer.layer_lr_scale=inverse_usage",
            "model.per_depth_norm=true",
            "trainer.max_epochs=1",
        ],
        tmp_path,
    )
    summary = train(cfg)
    assert math.isfinite(summary["metrics"]["train/loss"])
    ckpt = torch.load(summary["last_checkpoint"], weights_only=True)
    assert ckpt["hyper_parameters"]["distill"]["teacher_depth"] == "max"
    assert "norms.6.weight" in {k.removeprefix("net.") for k in ckpt["state_dict"]}
