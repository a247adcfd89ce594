"""Online distillation: which subnets a step trains, and the knowledge-distillation losses.

The paper's exact choices are not public in full, so every one is a switch (``conf/distill/``):

- ``teacher``: how the teacher subnet is chosen each step
  - ``sampled`` (default): uniform over the teacher pool ``space.upper(teacher_upper_k)`` (the
    ``k`` largest choices of each dimension); the student is uniform over the whole space.
  - ``max``: the largest subnet teaches every step.
  - ``larger``: uniform among archs at least as large as the student in every gene.
  - ``sandwich``: BigNAS's rule: the largest subnet teaches the smallest one plus
    ``num_random_students`` uniform students.
  - ``none``: the AutoFormer baseline: ``subnets_per_step`` uniform subnets per step (default 1,
    AutoFormer's recipe), each trained on the labels only; 2 gives the baseline the same number
    of forward/backward passes per step as OVO's teacher + student (an equal-compute baseline).
- ``loss``: ``kl`` (KL with temperature, scaled by tau^2), ``soft_ce`` (soft-target cross
  entropy, tau^2), ``alpha_div`` (AlphaNet's adaptive alpha-divergence).
- ``alpha``: student loss = ``alpha * KD + (1 - alpha) * CE(labels)``; default 1.0 (the student
  learns from the teacher's predictions alone, as the method is described).
- ``kd_start_epoch``: epochs before it train the student on labels only (alpha treated as 0).
- ``teacher_depth``: ``pool`` (default: as the teacher rule draws it) or ``max`` (``sampled`` and
  ``larger`` teachers always take the space's deepest depth; their other genes as before).
- ``student_depth``: ``uniform`` (default, AutoFormer) or ``linear``: every uniformly drawn
  student (and ``none``'s subnets) takes depth choice k of n with probability k / (1 + ... + n),
  so the deepest layers are trained more often.

Why the last two exist: a uniform depth trains the deepest layers least (README, "Why the
supernet penalises depth"); :func:`layer_uses_per_step` gives the closed form for any setting.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from torch import Tensor

from ovo.errors import ConfigError
from ovo.settings import settings_from
from ovo.space import Arch, SearchSpace

TeacherMode = Literal["sampled", "max", "larger", "sandwich", "none"]
KDLoss = Literal["kl", "soft_ce", "alpha_div"]
TeacherDepth = Literal["pool", "max"]
StudentDepth = Literal["uniform", "linear"]


@dataclass(frozen=True)
class DistillConfig:
    teacher: TeacherMode = "sampled"
    teacher_upper_k: int = 2
    num_random_students: int = 2
    subnets_per_step: int = 1
    loss: KDLoss = "kl"
    alpha: float = 1.0
    tau: float = 1.0
    kd_start_epoch: int = 0
    alpha_div_min: float = -1.0
    alpha_div_max: float = 1.0
    alpha_div_clip: float = 5.0
    teacher_depth: TeacherDepth = "pool"
    student_depth: StudentDepth = "uniform"

    def __post_init__(self) -> None:
        if self.teacher not in ("sampled", "max", "larger", "sandwich", "none"):
            raise ConfigError(
                f"distill.teacher={self.teacher!r}: use sampled, max, larger, sandwich or none"
            )
        if self.loss not in ("kl", "soft_ce", "alpha_div"):
            raise ConfigError(f"distill.loss={self.loss!r}: use kl, soft_ce or alpha_div")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"distill.alpha={self.alpha} must be in [0, 1]")
        if self.tau <= 0:
            raise ConfigError(f"distill.tau={self.tau} must be positive")
        if self.subnets_per_step < 1:
            raise ConfigError(f"distill.subnets_per_step={self.subnets_per_step} must be >= 1")
        if self.subnets_per_step != 1 and self.teacher != "none":
            raise ConfigError(
                f"distill.subnets_per_step={self.subnets_per_step} applies to teacher=none only "
                f"(teacher={self.teacher} trains one teacher and its students per step)"
            )
        if self.teacher_depth not in ("pool", "max"):
            raise ConfigError(f"distill.teacher_depth={self.teacher_depth!r}: use pool or max")
        if self.teacher_depth == "max" and self.teacher not in ("sampled", "larger"):
            raise ConfigError(
                f"distill.teacher_depth=max applies to teacher=sampled or larger (teacher="
                f"{self.teacher} {'has no teacher' if self.teacher == 'none' else 'is the max'})"
            )
        if self.student_depth not in ("uniform", "linear"):
            raise ConfigError(
                f"distill.student_depth={self.student_depth!r}: use uniform or linear"
            )
        if self.teacher_upper_k < 1 or self.num_random_students < 0:
            raise ConfigError(
                "distill.teacher_upper_k must be >= 1 and distill.num_random_students >= 0"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DistillConfig:
        return settings_from(cls, data, "distill")


@dataclass(frozen=True)
class StepArchs:
    """The subnets one training step runs: an optional teacher and one or more students."""

    teacher: Arch | None
    students: tuple[Arch, ...]


def arch_rng(seed: int, step: int, micro: int = 0) -> random.Random:
    """The architecture RNG of one (micro-)step: a pure function of (seed, step, micro), so every
    DDP rank draws the same archs and a resumed run draws what the uninterrupted run drew. It is
    separate from the global RNGs, which data augmentation and drop-path consume."""
    return random.Random(f"ovo-arch/{seed}/{step}/{micro}")


def student_depth_weights(space: SearchSpace, cfg: DistillConfig) -> list[float] | None:
    """Relative weights of the space's depth choices for a drawn student (``None``: uniform)."""
    if cfg.student_depth == "uniform":
        return None
    return [float(k) for k in range(1, len(space.depth) + 1)]


def teacher_pool(space: SearchSpace, cfg: DistillConfig) -> SearchSpace:
    """The space a ``sampled`` teacher is drawn from: the ``teacher_upper_k`` largest choices of
    each dimension, the depth fixed to the deepest with ``teacher_depth=max``."""
    pool = space.upper(cfg.teacher_upper_k)
    if cfg.teacher_depth == "max":
        pool = replace(pool, depth=(space.depth[-1],))
    return pool


def sample_step_archs(space: SearchSpace, cfg: DistillConfig, rng: random.Random) -> StepArchs:
    weights = student_depth_weights(space, cfg)

    def draw() -> Arch:
        return space.sample(rng, depth_weights=weights)

    if cfg.teacher == "none":
        return StepArchs(None, tuple(draw() for _ in range(cfg.subnets_per_step)))
    if cfg.teacher == "sandwich":
        randoms = tuple(draw() for _ in range(cfg.num_random_students))
        return StepArchs(space.max_arch, (space.min_arch, *randoms))
    student = draw()
    if cfg.teacher == "max":
        teacher = space.max_arch
    elif cfg.teacher == "sampled":
        teacher = space.sample(rng, teacher_pool(space, cfg))
    elif cfg.teacher_depth == "max":  # larger, at the deepest depth
        at_least = replace(space, depth=(space.depth[-1],))
        teacher = at_least.sample_at_least(student, rng)
    else:  # larger
        teacher = space.sample_at_least(student, rng)
    return StepArchs(teacher, (student,))


def _depth_law(depths: tuple[int, ...], weights: list[float] | None) -> dict[int, float]:
    w = weights or [1.0] * len(depths)
    return {d: wi / sum(w) for d, wi in zip(depths, w)}


def step_depth_laws(space: SearchSpace, cfg: DistillConfig) -> list[dict[int, float]]:
    """The depth distribution of each subnet one step runs (teacher first), in closed form from
    the sampling rule: ``{depth: probability}`` per subnet (marginals: a ``larger`` teacher's
    depth depends on its student's, which the marginal averages over)."""
    student = _depth_law(space.depth, student_depth_weights(space, cfg))
    deepest = {space.depth[-1]: 1.0}
    if cfg.teacher == "none":
        return [student] * cfg.subnets_per_step
    if cfg.teacher == "sandwich":
        return [deepest, {space.depth[0]: 1.0}] + [student] * cfg.num_random_students
    if cfg.teacher == "max" or cfg.teacher_depth == "max":
        return [deepest, student]
    if cfg.teacher == "sampled":
        return [_depth_law(teacher_pool(space, cfg).depth, None), student]
    teacher: dict[int, float] = {}  # larger: uniform among the depths >= the student's
    for d, p in student.items():
        deeper = [t for t in space.depth if t >= d]
        for t in deeper:
            teacher[t] = teacher.get(t, 0.0) + p / len(deeper)
    return [teacher, student]


def layer_uses_per_step(space: SearchSpace, cfg: DistillConfig) -> tuple[float, ...]:
    """Expected number of the step's subnets that run layer ``i`` (one entry per layer of the
    deepest arch): each subnet runs layer ``i`` when its depth is above ``i``."""
    laws = step_depth_laws(space, cfg)
    return tuple(
        sum(p for law in laws for d, p in law.items() if d > i) for i in range(space.depth[-1])
    )


_soft_target_ce = SoftTargetCrossEntropy()


def label_loss(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross entropy with hard labels (``[B]``) or soft/mixed targets (``[B, C]``)."""
    if target.ndim == logits.ndim:
        return _soft_target_ce(logits.float(), target)
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)


def _f_divergence(
    q_logits: Tensor, p_logits: Tensor, alpha: float, clip: float
) -> tuple[Tensor, Tensor]:
    """AlphaNet's f-divergence D_alpha(p || q) and its surrogate whose gradient is the
    divergence's gradient w.r.t. the student ``q`` (Wang et al., 2021, loss_ops.py)."""
    q_prob = F.softmax(q_logits, dim=1).detach()
    p_prob = F.softmax(p_logits, dim=1).detach()
    q_log_prob = F.log_softmax(q_logits, dim=1)
    ratio = p_prob / q_prob
    if abs(alpha) < 1e-3:
        ratio = ratio.clamp(0, clip)
        f, f_base, rho_f = -ratio.log(), 0.0, ratio.log() - 1.0
    elif abs(alpha - 1.0) < 1e-3:
        f, f_base, rho_f = ratio * ratio.log(), 0.0, ratio
    else:
        iw = ratio.pow(alpha).clamp(0, clip)
        f_base = 1.0 / alpha / (alpha - 1.0)
        f, rho_f = iw * f_base, iw / alpha + f_base
    loss = torch.sum(q_prob * (f - f_base), dim=1)
    surrogate = -torch.sum(q_prob * rho_f * q_log_prob, dim=1)
    return loss, surrogate


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, cfg: DistillConfig) -> Tensor:
    """Distillation loss of the student towards the (detached) teacher predictions."""
    s = student_logits.float() / cfg.tau
    t = teacher_logits.detach().float() / cfg.tau
    if cfg.loss == "kl":
        return (
            F.kl_div(
                F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True
            )
            * cfg.tau**2
        )
    if cfg.loss == "soft_ce":
        return torch.sum(-F.softmax(t, -1) * F.log_softmax(s, -1), dim=-1).mean() * cfg.tau**2
    left, grad_left = _f_divergence(s, t, cfg.alpha_div_min, cfg.alpha_div_clip)
    right, grad_right = _f_divergence(s, t, cfg.alpha_div_max, cfg.alpha_div_clip)
    # adaptive: follow whichever divergence is larger for each sample
    return torch.where(left > right, grad_left, grad_right).mean() * cfg.tau**2


def step_losses(
    forward: Callable[[Tensor, Arch], Tensor],
    x: Tensor,
    y: Tensor,
    archs: StepArchs,
    cfg: DistillConfig,
    label_smoothing: float = 0.0,
    kd_on: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The summed loss of one online-distillation step (one backward) and its parts.

    ``forward(x, arch)`` runs a subnet (a :class:`~ovo.supernet.SuperViT` or a wrapper). The
    teacher, if any, learns from the labels (``y``: hard or mixed targets); each student from
    ``alpha * KD + (1 - alpha) * CE`` against the detached teacher logits (labels only when there
    is no teacher, ``alpha`` is 0 or ``kd_on`` is false). The parts (detached): ``teacher_loss``
    (with a teacher), ``student_loss``, ``student_ce`` and ``student_kd`` (when KD is on), each a
    mean over the students. This is the one definition of the step's loss: the LightningModule,
    the benchmark and the tests all call it.
    """
    alpha = cfg.alpha if kd_on else 0.0
    parts: dict[str, Tensor] = {}
    total: Tensor | None = None
    teacher_logits = None
    if archs.teacher is not None:
        teacher_logits = forward(x, archs.teacher)
        total = label_loss(teacher_logits, y, label_smoothing)
        parts["teacher_loss"] = total.detach()
    losses, kds, ces = [], [], []
    for student in archs.students:
        logits = forward(x, student)
        ce = label_loss(logits, y, label_smoothing)
        loss = ce
        if teacher_logits is not None and alpha > 0:
            kd = kd_loss(logits, teacher_logits, cfg)
            loss = alpha * kd + (1.0 - alpha) * ce
            kds.append(kd.detach())
        ces.append(ce.detach())
        losses.append(loss.detach())
        total = loss if total is None else total + loss
    assert total is not None, "a step runs at least one student"
    parts["student_loss"] = torch.stack(losses).mean()
    parts["student_ce"] = torch.stack(ces).mean()
    if kds:
        parts["student_kd"] = torch.stack(kds).mean()
    return total, parts
