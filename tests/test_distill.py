import math

import pytest
import torch
import torch.nn.functional as F

from ovo.errors import ConfigError
from ovo.space import load_space
from ovo.training.distill import (
    DistillConfig,
    arch_rng,
    kd_loss,
    label_loss,
    sample_step_archs,
)


def test_arch_rng_is_a_function_of_seed_step_and_microstep():
    space = load_space("tiny")
    cfg = DistillConfig()
    a = sample_step_archs(space, cfg, arch_rng(0, 5))
    assert a == sample_step_archs(space, cfg, arch_rng(0, 5))
    assert a != sample_step_archs(space, cfg, arch_rng(0, 6))
    assert a != sample_step_archs(space, cfg, arch_rng(1, 5))
    assert a != sample_step_archs(space, cfg, arch_rng(0, 5, micro=1))


@pytest.mark.parametrize("mode", ["sampled", "max", "larger", "sandwich", "none"])
def test_teacher_modes(mode):
    space = load_space("tiny")
    cfg = DistillConfig(teacher=mode, num_random_students=3)
    upper = space.upper(cfg.teacher_upper_k)
    differ = 0
    for step in range(60):
        archs = sample_step_archs(space, cfg, arch_rng(0, step))
        assert all(s in space for s in archs.students)
        t = archs.teacher
        if mode == "none":
            assert t is None and len(archs.students) == 1
            continue
        assert t in space
        if mode == "sampled":
            assert t in upper
        if mode == "max":
            assert t == space.max_arch
        if mode == "larger":
            s = archs.students[0]
            assert t.embed_dim >= s.embed_dim and t.depth >= s.depth
            assert all(a >= b for a, b in zip(t.num_heads, s.num_heads))
        if mode == "sandwich":
            assert t == space.max_arch and archs.students[0] == space.min_arch
            assert len(archs.students) == 1 + cfg.num_random_students
        differ += any(s != t for s in archs.students)
    if mode != "none":
        assert differ >= 55  # teacher and student are distinct subnets almost every step


def test_equal_compute_baseline_trains_several_label_subnets_per_step():
    space = load_space("tiny")
    one = DistillConfig(teacher="none")
    two = DistillConfig(teacher="none", subnets_per_step=2)
    distinct = 0
    for step in range(20):
        a1 = sample_step_archs(space, one, arch_rng(0, step))
        a2 = sample_step_archs(space, two, arch_rng(0, step))
        assert a2.teacher is None and len(a2.students) == 2
        assert a2.students[0] == a1.students[0]  # the same stream, one more draw
        distinct += a2.students[0] != a2.students[1]
    assert distinct >= 18
    with pytest.raises(ConfigError, match="teacher=none only"):
        DistillConfig(teacher="sampled", subnets_per_step=2)
    with pytest.raises(ConfigError, match="must be >= 1"):
        DistillConfig(teacher="none", subnets_per_step=0)


def test_kl_loss_matches_definition_and_is_zero_for_equal_logits():
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    for tau in (1.0, 4.0):
        cfg = DistillConfig(loss="kl", tau=tau)
        p = F.softmax(t / tau, -1)
        expected = (p * (p.log() - F.log_softmax(s / tau, -1))).sum(-1).mean() * tau**2
        torch.testing.assert_close(kd_loss(s, t, cfg), expected)
        assert kd_loss(t, t, cfg).abs() < 1e-6
    # soft CE differs from KL by the teacher entropy (a constant for the student)
    cfg_ce, cfg_kl = DistillConfig(loss="soft_ce"), DistillConfig(loss="kl")
    p = F.softmax(t, -1)
    entropy = -(p * p.log()).sum(-1).mean()
    torch.testing.assert_close(kd_loss(s, t, cfg_ce), kd_loss(s, t, cfg_kl) + entropy)


def test_kd_gradient_flows_to_student_only():
    s = torch.randn(4, 5, requires_grad=True)
    t = torch.randn(4, 5, requires_grad=True)
    for loss in ("kl", "soft_ce", "alpha_div"):
        s.grad = t.grad = None
        kd_loss(s, t, DistillConfig(loss=loss)).backward()
        assert t.grad is None and s.grad.abs().sum() > 0


def test_alpha_divergence_gradient_pulls_student_towards_teacher():
    torch.manual_seed(1)
    t = torch.randn(16, 10)
    s = torch.randn(16, 10, requires_grad=True)
    cfg = DistillConfig(loss="alpha_div")
    opt = torch.optim.SGD([s], lr=1.0)
    kl = lambda: float(kd_loss(s.detach(), t, DistillConfig(loss="kl")))  # noqa: E731
    before = kl()
    for _ in range(100):
        opt.zero_grad()
        kd_loss(s, t, cfg).backward()
        opt.step()
    assert kl() < 0.5 * before


def test_label_loss_hard_and_soft_targets_agree_on_one_hot():
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(label_loss(logits, y), label_loss(logits, F.one_hot(y, 4).float()))
    smooth = label_loss(logits, y, label_smoothing=0.1)
    assert not math.isclose(float(smooth), float(label_loss(logits, y)))


def test_bad_distill_settings_are_refused():
    with pytest.raises(ConfigError, match="distill.teacher"):
        DistillConfig(teacher="biggest")
    with pytest.raises(ConfigError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="unknown setting distill.temperature"):
        DistillConfig.from_dict({"temperature": 2})
