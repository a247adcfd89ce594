"""What every measure of one setting shares, built once: the ``tiny`` space, the bench archs,
a seeded batch, the autocast context, the supernet (the bench's one construction site) and the
static timm models exported from it."""

from __future__ import annotations

import random
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from ovo.export import export_subnet
from ovo.paths import conf_dir
from ovo.space import Arch, SearchSpace, load_space
from ovo.supernet import SuperViT, ViTConfig
from ovo.supernet.grads import SliceGrads
from ovo.training.distill import DistillConfig, StepArchs


@dataclass(frozen=True)
class Setting:
    name: str
    cfg: ViTConfig
    batch: int


def settings(quick: bool, device_type: str = "cpu") -> list[Setting]:
    """GPU-realistic batches on a GPU (128 at 224px, 256 at 32px), CPU-sized ones on a CPU;
    ``quick`` (the smoke tests): a toy setting, 5 tokens of 2 images, where every row's wiring
    runs in seconds (the tiny space's weights, the bench archs, are unchanged)."""
    small = ViTConfig(img_size=32, patch_size=4, num_classes=100, drop_path_rate=0.0)
    large = ViTConfig(img_size=224, patch_size=16, num_classes=1000, drop_path_rate=0.0)
    if quick:
        toy = ViTConfig(img_size=16, patch_size=8, num_classes=10, drop_path_rate=0.0)
        return [Setting("16px/p8/b2", toy, 2)]
    if device_type == "cuda":
        return [Setting("32px/p4/b256", small, 256), Setting("224px/p16/b128", large, 128)]
    return [Setting("32px/p4/b64", small, 64), Setting("224px/p16/b16", large, 16)]


def find_setting(name: str, quick: bool, device_type: str) -> Setting:
    """The setting called ``name`` (how a child process is told which one to build)."""
    return next(s for s in settings(quick, device_type) if s.name == name)


def tiny_space() -> SearchSpace:
    """The space every row measures."""
    return load_space("tiny")


def autoformer_t() -> Arch:
    """The released AutoFormer-T subnet (its 3.0 MLP ratios fit the tiny supernet's weights)."""
    return Arch.from_yaml(conf_dir() / "subnets" / "autoformer_ti.yaml")


def mid_arch(space: SearchSpace) -> Arch:
    """The middle choice of every dimension (lower middle for even counts)."""
    c = lambda v: v[(len(v) - 1) // 2]  # noqa: E731
    return Arch.uniform(c(space.embed_dim), c(space.depth), c(space.num_heads), c(space.mlp_ratio))


def teacher_student_pair(space: SearchSpace) -> StepArchs:
    """A representative step of the default mode: teacher from the upper pool, uniform student."""
    rng = random.Random(0)
    teacher = space.sample(rng, space.upper(2))
    return StepArchs(teacher, (space.sample(rng),))


class Fixture:
    """One setting on one device. Members are built on first use and then shared: the measures
    of a setting time the same weights, inputs and static models."""

    def __init__(self, setting: Setting, device: torch.device) -> None:
        self.setting, self.device = setting, device
        self.cfg = cfg = setting.cfg
        self.space = tiny_space()
        self.archs = {
            "min": self.space.min_arch,
            "mid": mid_arch(self.space),
            "max": self.space.max_arch,
            "AutoFormer-T": autoformer_t(),
        }
        self.pair = teacher_student_pair(self.space)
        self.kd = DistillConfig()
        g = torch.Generator().manual_seed(0)
        shape = (setting.batch, 3, cfg.img_size, cfg.img_size)
        self.x = torch.randn(shape, generator=g).to(device)
        self.y = torch.randint(0, cfg.num_classes, (setting.batch,), generator=g).to(device)
        self._static: dict[Arch, nn.Module] = {}

    @property
    def teacher(self) -> Arch:
        assert self.pair.teacher is not None
        return self.pair.teacher

    @property
    def student(self) -> Arch:
        return self.pair.students[0]

    def amp(self) -> AbstractContextManager:
        """bf16 autocast on a GPU; fp32 on a CPU."""
        cuda = self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cuda)

    def new_supernet(self) -> SuperViT:
        """A fresh supernet of this setting on this device (seeded: the same initial weights
        every time). Measures that need a second one (compiled, autograd slices) call this."""
        torch.manual_seed(0)
        return SuperViT(self.space, self.cfg).to(self.device)

    @cached_property
    def supernet(self) -> SuperViT:
        """The shared supernet."""
        return self.new_supernet()

    @cached_property
    def slice_grads(self) -> SliceGrads:
        """The shared supernet's gradients written slice by slice into one buffer, as in
        training (attached on first use; ``.zero_`` clears them as a training step does)."""
        return SliceGrads(self.supernet.parameters())

    def static(self, arch: Arch) -> nn.Module:
        """``arch`` of the shared supernet exported as a static timm model (built once)."""
        if arch not in self._static:
            self._static[arch] = export_subnet(self.supernet, arch).to(self.device)
        return self._static[arch]
