"""Small datasets written in their real on-disk formats, for tests (no network, fast)."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

# shared/ lies beside the checkout (here and in CI); OVO_SHARED_DIR overrides it
CIFAR10_ZIP = (
    Path(os.environ.get("OVO_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
    / "data/cifar10/cifar10_jpg.zip"
)
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def _images(rng: np.random.Generator, labels: np.ndarray, num_classes: int) -> np.ndarray:
    # A per-class base colour plus noise, flattened as CIFAR stores it: [N, 3*32*32] uint8, CHW.
    base = rng.integers(40, 216, size=(num_classes, 3, 1, 1))
    noise = rng.integers(-40, 40, size=(len(labels), 3, 32, 32))
    return np.clip(base[labels] + noise, 0, 255).astype(np.uint8).reshape(len(labels), -1)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar100(root: Path, train_per_class: int = 4, test_per_class: int = 2) -> Path:
    """``root/cifar-100-python/{train,test,meta}`` with the keys torchvision reads."""
    rng = np.random.default_rng(100)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        fine = rng.permutation(np.repeat(np.arange(100), per_class))
        _dump(
            folder / split,
            {
                "filenames": [f"{split}_{i}.png" for i in range(len(fine))],
                "batch_label": f"{split} batch",
                "fine_labels": fine.tolist(),
                "coarse_labels": (fine // 5).tolist(),
                "data": _images(rng, fine, 100),
            },
        )
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{i:02d}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)],
        },
    )
    return root


def write_cifar10(root: Path, train_per_class: int = 10, test_per_class: int = 4) -> Path:
    """``root/cifar-10-batches-py/`` (5 train batches, test batch, batches.meta)."""
    rng = np.random.default_rng(10)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = rng.permutation(np.repeat(np.arange(10), train_per_class))
    for b, part in enumerate(np.array_split(train, 5), start=1):
        _dump(
            folder / f"data_batch_{b}",
            {"batch_label": f"batch {b}", "labels": part.tolist(), "data": _images(rng, part, 10)},
        )
    test = rng.permutation(np.repeat(np.arange(10), test_per_class))
    _dump(folder / "test_batch", {"labels": test.tolist(), "data": _images(rng, test, 10)})
    _dump(folder / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": 10})
    return root


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("ants", "bees", "wasps"),
    per_class: dict[str, int] | None = None,
    size: int = 20,
) -> Path:
    """``root/<split>/<class>/<k>.{png,jpg}``: class-coloured images, PNG and JPEG mixed."""
    per_class = per_class or {"train": 8, "val": 3}
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                pixels = np.full((size, size, 3), 60 + 60 * c, dtype=np.int64)
                pixels = np.clip(pixels + rng.integers(-30, 30, pixels.shape), 0, 255)
                ext = "png" if k % 2 else "jpg"
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{k:03d}.{ext}")
    return root


def extract_cifar10_subset(dest: Path, per_class: dict[str, int]) -> Path:
    """The first ``per_class[split]`` images of each class of the real CIFAR-10 JPEG archive."""
    taken: dict[tuple[str, str], int] = defaultdict(int)
    with zipfile.ZipFile(CIFAR10_ZIP) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) != 3 or parts[0] not in per_class or not parts[2]:
                continue
            key = (parts[0], parts[1])
            if taken[key] < per_class[parts[0]]:
                taken[key] += 1
                archive.extract(name, dest)
    return dest
