"""Raw samples: in-memory arrays (CIFAR pickles, scikit-learn digits), generated tensors, image
folders. Each source knows every label without decoding an image, which the search split needs.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.folder import IMG_EXTENSIONS

from ovo.data.sampling import CorruptImageError, mix_seed
from ovo.errors import DataError


class ArraySource:
    """uint8 images ``[N, H, W]`` or ``[N, H, W, C]`` in memory, served as PIL images."""

    def __init__(
        self, name: str, images: np.ndarray, targets: Any, mode: str | None = None
    ) -> None:
        self.name, self.images, self.mode = name, images, mode
        self.targets = np.asarray(targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, index: int) -> tuple[Image.Image, int]:
        image = Image.fromarray(self.images[index])
        if self.mode is not None and image.mode != self.mode:
            image = image.convert(self.mode)
        return image, int(self.targets[index])

    def sample_id(self, index: int) -> str:
        return f"{self.name}[{index}]"


class FakeSource:
    """Generated, learnable float images: a fixed random low-resolution pattern per class,
    upsampled to ``img_size``, plus Gaussian noise. Sample ``i`` is a pure function of
    ``(data_seed, split, i)`` and is generated when loaded, so memory does not grow with size.
    """

    def __init__(
        self,
        split: str,
        num_samples: int,
        num_classes: int,
        in_chans: int,
        img_size: int,
        data_seed: int,
        noise_std: float,
    ) -> None:
        self.name, self.img_size, self.noise_std = f"fake-{split}", img_size, noise_std
        self._salt = mix_seed(data_seed, 1 if split == "train" else 2)
        # The patterns depend on data_seed only, so train and val share them.
        g = torch.Generator().manual_seed(mix_seed(data_seed, 0))
        low = min(8, img_size)
        self.patterns = torch.rand(num_classes, in_chans, low, low, generator=g)
        rng = np.random.default_rng(self._salt)
        self.targets = rng.permutation(np.arange(num_samples) % num_classes).astype(np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        label = int(self.targets[index])
        size = (self.img_size, self.img_size)
        image = F.interpolate(self.patterns[label][None], size=size, mode="nearest")[0]
        g = torch.Generator().manual_seed(mix_seed(self._salt, index))
        return image + self.noise_std * torch.randn(image.shape, generator=g), label

    def sample_id(self, index: int) -> str:
        return f"{self.name}[{index}]"


class FolderSource:
    """Image files ``(path, label)``, decoded on load and converted to ``mode``.

    With ``cache_decoded`` every image is kept in memory once decoded, so later epochs skip the
    file read and the JPEG/PNG decode (worth it for small images such as CIFAR's 32px: on 2 CPU
    cores decoding costs about as much as a small model's step; 50k 32px RGB images take
    ~150 MB). Each DataLoader worker process fills its own cache, so use it with
    ``num_workers=0`` or ``persistent_workers=true``.
    """

    def __init__(
        self,
        name: str,
        samples: list[tuple[str, int]],
        mode: str = "RGB",
        cache_decoded: bool = False,
    ) -> None:
        self.name, self.samples, self.mode = name, samples, mode
        self.targets = np.fromiter((label for _, label in samples), np.int64, len(samples))
        self._cache: dict[int, Image.Image] | None = {} if cache_decoded else None

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.samples[index]
        if self._cache is not None and index in self._cache:
            return self._cache[index], label
        try:
            with Image.open(path) as image:
                decoded = image.convert(self.mode)  # convert() decodes the whole file
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            raise CorruptImageError(
                f"cannot decode image {path} ({type(err).__name__}: {err}); delete or replace "
                "the file, or set data.skip_corrupt=true to skip unreadable images with a warning"
            ) from err
        if self._cache is not None:
            self._cache[index] = decoded
        return decoded, label

    def sample_id(self, index: int) -> str:
        return self.samples[index][0]


# ---- image folders -----------------------------------------------------------------------------
_EXTENSIONS = tuple(IMG_EXTENSIONS)


def check_root_folder(root: Path, expected: str) -> None:
    """A data root that is not a folder, said as what it is (a file, or missing); ``expected``
    describes the layout wanted."""
    if root.is_dir():
        return
    what = "is a file, not a folder" if root.exists() else "does not exist"
    raise DataError(f"data root {root} {what}; expected {expected}")


def list_class_dirs(split_dir: Path) -> list[str]:
    """Sorted class folder names of ``split_dir`` (hidden folders skipped, as ``.ipynb_*``)."""
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def scan_split(split_dir: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """All image files of ``split_dir/<class>/**`` in sorted order, labelled by ``class_to_idx``.

    Like torchvision's ``make_dataset``, files are filtered by extension from directory listings
    only (no per-file stat), which matters with a million images.
    """
    samples: list[tuple[str, int]] = []
    for name in list_class_dirs(split_dir):
        class_dir = split_dir / name
        if name not in class_to_idx:
            raise DataError(
                f"class folder {class_dir} is not a class of the training split; "
                "every validation class needs a training folder of the same name"
            )
        files = sorted(
            os.path.join(dirpath, f)
            for dirpath, _, filenames in os.walk(class_dir, followlinks=True)
            for f in filenames
            if f.lower().endswith(_EXTENSIONS) and not f.startswith(".")
        )
        if not files:
            raise DataError(
                f"class folder {class_dir} has no images ({', '.join(_EXTENSIONS[:4])}, ...); "
                "add images or remove the folder"
            )
        samples.extend((path, class_to_idx[name]) for path in files)
    return samples


# ---- CIFAR pickles -----------------------------------------------------------------------------
class _PresenceCheckOnly:
    """torchvision's CIFAR readers with the md5 checks replaced by presence checks.

    Files generated in the same format (tests) then load; a truncated real download still fails
    when unpickled. ``download=true`` goes through torchvision's own checked download instead.
    """

    root: str
    base_folder: str
    meta: dict[str, str]

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        names = [name for name, _ in self.train_list + self.test_list]  # type: ignore[attr-defined]
        return all((folder / name).is_file() for name in names)

    def _load_meta(self) -> None:
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _CIFAR10Files(_PresenceCheckOnly, CIFAR10):
    pass


class _CIFAR100Files(_PresenceCheckOnly, CIFAR100):
    pass


def cifar_expected_files(cls: type[CIFAR10]) -> list[str]:
    return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


def load_cifar(root: Path, hundred: bool, train: bool) -> tuple[ArraySource, list[str]]:
    """One CIFAR split from torchvision's python-pickle layout under ``root``."""
    cls = _CIFAR100Files if hundred else _CIFAR10Files
    label = "CIFAR-100" if hundred else "CIFAR-10"
    folder = root / cls.base_folder
    if root.exists():
        check_root_folder(root, f"a folder that contains {cls.base_folder}/")
    missing = [f for f in cifar_expected_files(cls) if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"{label} not found: expected {folder}/ with files {', '.join(cifar_expected_files(cls))} "
            f"(missing: {', '.join(missing)}); point data.root at the folder that contains "
            f"{cls.base_folder}/, or set data.download=true to download it (needs network)"
        )
    try:
        ds = cls(str(root), train=train, download=False)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
        raise DataError(
            f"{folder} does not hold readable {label} python pickles ({type(err).__name__}: {err}); "
            "delete the folder and download it again"
        ) from err
    split = "train" if train else "test"
    return ArraySource(f"{cls.base_folder}/{split}", ds.data, ds.targets), list(ds.classes)


def download_cifar(root: Path, hundred: bool) -> None:
    """torchvision's download with its md5 checks (no-op when the files are already there)."""
    cls = CIFAR100 if hundred else CIFAR10
    try:
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise DataError(
            f"downloading {cls.__name__} to {root} failed ({type(err).__name__}: {err}); without "
            f"network, copy {cls.base_folder}/ there by hand and set data.download=false"
        ) from err
