"""Train and eval transforms from an ``aug`` dict, built from timm's pieces.

Two families: large images (ImageNet-style, ``small_image: false``) use timm's
``create_transform`` as is (RandomResizedCrop, flip, RandAugment or color jitter, normalize,
RandomErasing; eval = resize to ``img_size / crop_pct`` and center crop). Small images (CIFAR,
digits; ``small_image: true``) use the usual 32px recipe: resize to ``img_size`` if needed,
``RandomCrop(img_size, padding)``, flip, optional timm RandAugment/AutoAugment or color jitter,
``ToTensor``, normalize, optional timm RandomErasing; eval = resize + center crop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, ImageOps
from timm.data import auto_augment as timm_aa
from timm.data import create_transform
from timm.data.auto_augment import (
    augment_and_mix_transform,
    auto_augment_transform,
    rand_augment_transform,
)
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import str_to_interp_mode, str_to_pil_interp
from torchvision import transforms as T

from ovo.errors import ConfigError
from ovo.settings import plain, settings_dict, settings_from


@dataclass(frozen=True)
class AugConfig:
    """Augmentation options: the ``aug`` dict of a data config (missing keys: the defaults of the
    data module, then these).

    Attributes:
        small_image: 32px-style pipeline (pad + random crop) instead of RandomResizedCrop.
        auto_augment: timm policy string, e.g. ``rand-m9-mstd0.5-inc1`` (RandAugment),
            ``augmix-m5-w4-d2``, ``original``; null = none. Disables color jitter, as in timm.
        re_prob: RandomErasing probability (0 = off); ``re_mode`` / ``re_count`` as in timm.
        hflip: horizontal flip probability (``true`` = 0.5, ``false`` = 0).
        color_jitter: jitter strength for brightness/contrast/saturation (null = off); only used
            without ``auto_augment``.
        interpolation: resize interpolation (``bicubic``, ``bilinear``, ``random`` for training).
        scale / ratio: RandomResizedCrop area and aspect ranges (large images).
        padding: RandomCrop padding of small images; null = ``img_size // 8`` (4 at 32px).
        crop_pct: eval crop fraction (resize to ``img_size / crop_pct``, center crop);
            null = 0.875 for large images (timm's default) and 1.0 for small ones.
    """

    small_image: bool = False
    auto_augment: str | None = None
    re_prob: float = 0.0
    re_mode: str = "pixel"
    re_count: int = 1
    hflip: float | bool = 0.5
    color_jitter: float | None = None
    interpolation: str = "bicubic"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    padding: int | None = None
    crop_pct: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.hflip, bool):
            object.__setattr__(self, "hflip", 0.5 if self.hflip else 0.0)
        if self.auto_augment in ("", "none", "None"):
            object.__setattr__(self, "auto_augment", None)
        for key in ("re_prob", "hflip"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"data.aug.{key}={getattr(self, key)} must be in [0, 1]")

    @classmethod
    def resolve(cls, *layers: Mapping[str, Any] | AugConfig | None) -> AugConfig:
        """Merge ``layers`` left to right (later keys win) over the dataclass defaults."""
        merged: dict[str, Any] = {}
        for layer in layers:
            layer = settings_dict(layer) if isinstance(layer, AugConfig) else plain(layer)
            if layer is None:
                continue
            if not isinstance(layer, Mapping):
                raise ConfigError(f"data.aug must be a mapping of options, got {layer!r}")
            merged.update(layer)
        return settings_from(cls, merged, "data.aug")


def _eval_interpolation(aug: AugConfig) -> str:
    return "bicubic" if aug.interpolation == "random" else aug.interpolation


def _posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    # timm's "increasing" posterize keeps 4..0 bits; Pillow >= 12 rejects 0 bits (older Pillow
    # returned a black image). Keep timm's meaning without the crash.
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def patch_auto_augment(transform: Any) -> Any:
    """Make the timm auto-augment ops inside ``transform`` safe with new Pillow (in place)."""
    for t in getattr(transform, "transforms", [transform]):
        ops = list(getattr(t, "ops", []))
        for sub_policy in getattr(t, "policy", []):  # AutoAugment: a list of op lists
            ops.extend(sub_policy)
        for op in ops:
            if getattr(op, "aug_fn", None) is timm_aa.posterize:
                op.aug_fn = _posterize
    return transform


def _aa_transform(policy: str, img_size: int, mean: Sequence[float], interpolation: str) -> Any:
    """timm's auto-augment ops, with the hparams timm's ``create_transform`` would pass."""
    fill = tuple(min(255, round(255 * m)) for m in mean)
    params: dict[str, Any] = {
        "translate_const": int(img_size * 0.45),
        "img_mean": fill if len(fill) == 3 else fill[0],  # PIL fills L images with an int
    }
    if interpolation != "random":
        params["interpolation"] = str_to_pil_interp(interpolation)
    if policy.startswith("rand"):
        return patch_auto_augment(rand_augment_transform(policy, params))
    if policy.startswith("augmix"):
        params["translate_pct"] = 0.3
        return patch_auto_augment(augment_and_mix_transform(policy, params))
    return patch_auto_augment(auto_augment_transform(policy, params))


def build_train_transform(
    aug: AugConfig, img_size: int, mean: Sequence[float], std: Sequence[float]
) -> T.Compose:
    """The random training transform: PIL image in, normalized float tensor ``[C, H, W]`` out."""
    if not aug.small_image:
        transform = create_transform(
            img_size,
            is_training=True,
            scale=aug.scale,
            ratio=aug.ratio,
            hflip=aug.hflip,
            color_jitter=aug.color_jitter,
            auto_augment=aug.auto_augment,
            interpolation=aug.interpolation,
            mean=tuple(mean),
            std=tuple(std),
            re_prob=aug.re_prob,
            re_mode=aug.re_mode,
            re_count=aug.re_count,
        )
        return patch_auto_augment(transform)
    interp = _eval_interpolation(aug)
    padding = img_size // 8 if aug.padding is None else aug.padding
    tfl: list[Any] = [
        # No-ops when the image already has the size (CIFAR at 32px); digits are upscaled here.
        T.Resize(img_size, interpolation=str_to_interp_mode(interp)),
        T.CenterCrop(img_size),
    ]
    if padding > 0:
        tfl.append(T.RandomCrop(img_size, padding=padding))
    if aug.hflip > 0:
        tfl.append(T.RandomHorizontalFlip(aug.hflip))
    if aug.auto_augment:
        tfl.append(_aa_transform(aug.auto_augment, img_size, mean, aug.interpolation))
    elif aug.color_jitter:
        tfl.append(T.ColorJitter(*(aug.color_jitter,) * 3))
    tfl += [T.ToTensor(), T.Normalize(torch.tensor(mean), torch.tensor(std))]
    if aug.re_prob > 0:
        tfl.append(
            RandomErasing(aug.re_prob, mode=aug.re_mode, max_count=aug.re_count, device="cpu")
        )
    return T.Compose(tfl)


def build_eval_transform(
    aug: AugConfig, img_size: int, mean: Sequence[float], std: Sequence[float]
) -> T.Compose:
    """The deterministic eval transform (val, test, search): resize, center crop, normalize."""
    interp = _eval_interpolation(aug)
    if not aug.small_image:
        return create_transform(
            img_size,
            is_training=False,
            interpolation=interp,
            crop_pct=aug.crop_pct,
            mean=tuple(mean),
            std=tuple(std),
        )
    crop_pct = 1.0 if aug.crop_pct is None else aug.crop_pct
    return T.Compose(
        [
            T.Resize(math.floor(img_size / crop_pct), interpolation=str_to_interp_mode(interp)),
            T.CenterCrop(img_size),
            T.ToTensor(),
            T.Normalize(torch.tensor(mean), torch.tensor(std)),
        ]
    )


def build_tensor_transform(aug: AugConfig, mean: Sequence[float], std: Sequence[float]) -> Any:
    """For generated float tensors (fake data): optional flip, then normalize."""
    tfl: list[Any] = [T.RandomHorizontalFlip(aug.hflip)] if aug.hflip > 0 else []
    return T.Compose([*tfl, T.Normalize(torch.tensor(mean), torch.tensor(std))])
