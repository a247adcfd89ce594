"""The dataset catalogue: fake, digits, CIFAR-10/100, image folders and ImageNet.

Each is an :class:`~ovo.data.base.ImageClassificationDataModule` (splits, sharding, seeded
loading) that knows its files, classes, normalisation and default augmentation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ovo.data.base import DEFAULT_DATA_DIR, ImageClassificationDataModule, check_positive
from ovo.data.sampling import Source
from ovo.data.sources import (
    ArraySource,
    FakeSource,
    FolderSource,
    check_root_folder,
    download_cifar,
    list_class_dirs,
    load_cifar,
    scan_split,
)
from ovo.data.transforms import AugConfig, build_tensor_transform
from ovo.errors import ConfigError, DataError

# Digits has no official val split; this fixes ours.
DIGITS_SPLIT_SEED = 0

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
DIGITS_MEAN, DIGITS_STD = 0.305, 0.376  # of load_digits scaled to [0, 1]

# RandAugment + RandomErasing at 32px, the usual recipe for ViTs trained on CIFAR from scratch.
SMALL_IMAGE_AUG: dict[str, Any] = {
    "small_image": True,
    "hflip": 0.5,
    "auto_augment": "rand-m9-mstd0.5-inc1",
    "re_prob": 0.25,
}
# DeiT's ImageNet recipe (Mixup/CutMix are applied by the LightningModule, not here).
DEIT_AUG: dict[str, Any] = {
    "small_image": False,
    "auto_augment": "rand-m9-mstd0.5-inc1",
    "re_prob": 0.25,
    "re_mode": "pixel",
    "re_count": 1,
    "hflip": 0.5,
    "color_jitter": 0.4,
    "interpolation": "bicubic",
    "scale": (0.08, 1.0),
    "crop_pct": 0.875,
}


class FakeDataModule(ImageClassificationDataModule):
    """Generated, learnable data (class patterns + noise, see :class:`~.sources.FakeSource`).

    Content depends on ``data_seed`` only (not on ``seed``), so runs with different seeds see the
    same data. Augmentation: an optional horizontal flip (``aug.hflip``); other keys are ignored.
    """

    name = "fake"
    default_aug: ClassVar[Mapping[str, Any]] = {"hflip": 0.5}

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        num_train: int = 512,
        num_val: int = 256,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        noise_std: float = 0.5,
        data_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, img_size=img_size, **kwargs)
        self.num_train = check_positive("num_train", num_train)
        self.num_val = check_positive("num_val", num_val)
        self.num_classes = check_positive("num_classes", num_classes)
        self.in_chans = check_positive("in_chans", in_chans)
        self.noise_std, self.data_seed = float(noise_std), int(data_seed)
        self._set_stats((0.5,) * self.in_chans, (0.5,) * self.in_chans)

    def _load_sources(self) -> tuple[Source, Source, np.ndarray, np.ndarray]:
        self.classes = [f"class_{c}" for c in range(self.num_classes)]
        args = (self.num_classes, self.in_chans, self.img_size, self.data_seed, self.noise_std)
        train = FakeSource("train", self.num_train, *args)
        val = FakeSource("val", self.num_val, *args)
        return train, val, np.arange(len(train)), np.arange(len(val))

    def build_transforms(self) -> tuple[Any, Any]:
        no_flip = AugConfig.resolve(self.aug, {"hflip": 0.0})
        return (
            build_tensor_transform(self.aug, self.mean, self.std),
            build_tensor_transform(no_flip, self.mean, self.std),
        )


def _fixed(name: str, label: str, value: int, allowed: Sequence[int]) -> int:
    # num_classes / in_chans are config keys (the model interpolates them) but fixed by the data.
    if int(value) not in allowed:
        raise ConfigError(f"{label} needs data.{name} in {list(allowed)}, got {value}")
    return int(value)


class DigitsDataModule(ImageClassificationDataModule):
    """scikit-learn's bundled digits (1797 8x8 grayscale images, 10 classes; no download).

    Upscaled to ``img_size`` and replicated to 3 channels (``in_chans=1`` keeps one). The val
    split is a stratified ``val_fraction`` drawn with a fixed seed. ``root`` is unused.
    Default aug: pad-and-crop, no flip (a flipped digit is another glyph).
    """

    name = "digits"
    default_aug: ClassVar[Mapping[str, Any]] = {"small_image": True, "hflip": 0.0}

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        val_fraction: float = 0.2,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, img_size=img_size, **kwargs)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.num_classes = _fixed("num_classes", "digits", num_classes, (10,))
        self.in_chans = _fixed("in_chans", "digits", in_chans, (1, 3))
        self._set_stats((DIGITS_MEAN,) * self.in_chans, (DIGITS_STD,) * self.in_chans)

    def _load_sources(self) -> tuple[Source, Source, np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits  # lazily: scikit-learn is slow to import
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = np.round(digits.images * (255 / 16)).astype(np.uint8)  # values are 0..16
        mode = "RGB" if self.in_chans == 3 else "L"
        source = ArraySource("digits", images, digits.target, mode=mode)
        self.classes = [str(c) for c in range(10)]
        train, val = train_test_split(
            np.arange(len(source)),
            test_size=self.val_fraction,
            stratify=source.targets,
            random_state=DIGITS_SPLIT_SEED,
        )
        return source, source, np.sort(train), np.sort(val)


class CIFAR10DataModule(ImageClassificationDataModule):
    """CIFAR-10 in torchvision's python-pickle layout: ``root/cifar-10-batches-py/``.

    ``download=true`` fetches it (torchvision, md5-checked) in ``prepare_data``; otherwise only
    the files' presence is checked, and missing files raise :class:`DataError` naming them.
    val = test = the official test split.
    """

    name = "cifar10"
    hundred: ClassVar[bool] = False
    label: ClassVar[str] = "CIFAR-10"
    default_aug: ClassVar[Mapping[str, Any]] = SMALL_IMAGE_AUG

    def __init__(
        self,
        root: str | Path | None = DEFAULT_DATA_DIR,
        *,
        download: bool = False,
        num_classes: int | None = None,
        in_chans: int = 3,
        img_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root if root is not None else DEFAULT_DATA_DIR, img_size=img_size, **kwargs
        )
        self.download = bool(download)
        count = 100 if self.hundred else 10
        self.num_classes = _fixed("num_classes", self.label, num_classes or count, (count,))
        self.in_chans = _fixed("in_chans", self.label, in_chans, (3,))
        mean, std = (CIFAR100_MEAN, CIFAR100_STD) if self.hundred else (CIFAR10_MEAN, CIFAR10_STD)
        self._set_stats(mean, std)

    def prepare_data(self) -> None:
        if self.download:
            assert self.root is not None
            download_cifar(self.root, self.hundred)

    def _load_sources(self) -> tuple[Source, Source, np.ndarray, np.ndarray]:
        assert self.root is not None
        train, classes = load_cifar(self.root, self.hundred, train=True)
        val, _ = load_cifar(self.root, self.hundred, train=False)
        self.classes = classes
        for src in (train, val):
            if len(src) and (src.targets.min() < 0 or src.targets.max() >= self.num_classes):
                raise DataError(
                    f"{self.root}: {src.name} has labels outside 0..{self.num_classes - 1}; "
                    f"is it really {self.label}?"
                )
        return train, val, np.arange(len(train)), np.arange(len(val))


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (fine labels, 100 classes): ``root/cifar-100-python/{train,test,meta}``."""

    name = "cifar100"
    hundred = True
    label = "CIFAR-100"


class ImageFolderDataModule(ImageClassificationDataModule):
    """Images laid out as ``root/<split>/<class>/<image>`` (torchvision's ImageFolder).

    Classes are the sorted folder names of the train split, read at construction when ``root``
    exists (so ``num_classes`` is known before ``setup``); a given ``num_classes`` must match.
    The val split's class folders must be train classes (labels are the train split's).

    Corrupt or truncated files fail when loaded, naming the file. With ``skip_corrupt=true``
    they are skipped with a warning and replaced by the next decodable image of the same split
    (deterministic; it keeps epochs and shard sizes equal across ranks, which dropping samples
    would not, and never borrows an image from another split).
    """

    name = "imagefolder"
    default_aug: ClassVar[Mapping[str, Any]] = DEIT_AUG

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        train_split: str = "train",
        val_split: str = "val",
        num_classes: int | None = None,
        in_chans: int = 3,
        mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] = IMAGENET_DEFAULT_STD,
        skip_corrupt: bool = False,
        cache_decoded: bool = False,
        img_size: int = 224,
        **kwargs: Any,
    ) -> None:
        if root is None:
            raise DataError(
                "an image-folder dataset needs data.root (a folder with train/<class>/<image> "
                "and val/<class>/<image>)"
            )
        super().__init__(root, img_size=img_size, **kwargs)
        self.train_split, self.val_split = str(train_split), str(val_split)
        self.in_chans = _fixed("in_chans", "an image folder", in_chans, (1, 3))
        self._set_stats(mean, std)
        self._skip_corrupt = bool(skip_corrupt)
        self.cache_decoded = bool(cache_decoded)
        self.expected_num_classes = num_classes
        if num_classes is not None:
            self.num_classes = check_positive("num_classes", num_classes)
        if self.root is not None and self.root.is_dir():
            self._read_classes()
        elif num_classes is None:
            self._check_layout()  # raises: the root is missing

    @property
    def skip_corrupt(self) -> bool:
        return self._skip_corrupt

    def _layout(self) -> str:
        return (
            f"{self.root}/{self.train_split}/<class>/<image> and "
            f"{self.root}/{self.val_split}/<class>/<image>"
        )

    def _check_layout(self) -> Path:
        assert self.root is not None
        check_root_folder(self.root, self._layout())
        train_dir = self.root / self.train_split
        if not train_dir.is_dir():
            found = sorted(p.name for p in self.root.iterdir())[:10]
            what = f"it holds {found}" if found else "it is empty"
            raise DataError(
                f"{self.root} has no '{self.train_split}/' split folder ({what}); "
                f"expected {self._layout()}"
            )
        return train_dir

    def _read_classes(self) -> None:
        train_dir = self._check_layout()
        classes = list_class_dirs(train_dir)
        if not classes:
            raise DataError(
                f"{train_dir} has no class folders; expected {self._layout()} (one folder per class)"
            )
        if self.expected_num_classes is not None and self.expected_num_classes != len(classes):
            raise DataError(
                f"{train_dir} has {len(classes)} class folders but data.num_classes="
                f"{self.expected_num_classes}; set data.num_classes={len(classes)}"
            )
        self.classes, self.num_classes = classes, len(classes)

    def _load_sources(self) -> tuple[Source, Source, np.ndarray, np.ndarray]:
        self._read_classes()
        assert self.root is not None and self.classes is not None
        class_to_idx = {c: i for i, c in enumerate(self.classes)}
        val_dir = self.root / self.val_split
        if not val_dir.is_dir():
            raise DataError(
                f"{self.root} has no '{self.val_split}/' split folder; expected {self._layout()} "
                "(or set data.val_split to the folder name, e.g. test)"
            )
        mode = "RGB" if self.in_chans == 3 else "L"
        train_dir = self.root / self.train_split
        cache = self.cache_decoded
        train = FolderSource(str(train_dir), scan_split(train_dir, class_to_idx), mode, cache)
        val = FolderSource(str(val_dir), scan_split(val_dir, class_to_idx), mode, cache)
        if len(val) == 0:
            raise DataError(f"{val_dir} has no class folders; expected {self._layout()}")
        return train, val, np.arange(len(train)), np.arange(len(val))


class ImageNetDataModule(ImageFolderDataModule):
    """ImageNet-1k as an image folder (``root/train``, ``root/val`` with class folders), 224px,
    ImageNet mean/std and DeiT's augmentation. ``num_classes`` must match the folders (set it for
    subsets such as ImageNet-100)."""

    name = "imagenet"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        num_classes: int | None = 1000,
        img_size: int = 224,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, num_classes=num_classes, img_size=img_size, **kwargs)
