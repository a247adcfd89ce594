"""Data: LightningDataModules with self-sharded, reproducible loading and a held-out search split.

See :mod:`ovo.data.datamodules` for the splits, :mod:`ovo.data.sampling` for determinism and
sharding, and :mod:`ovo.data.transforms` for the ``aug`` options.
"""

from ovo.data.datamodules import (
    DEFAULT_DATA_DIR,
    SEARCH_SPLIT_SEED,
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    FakeDataModule,
    ImageClassificationDataModule,
    ImageFolderDataModule,
    ImageNetDataModule,
    make_datamodule,
    split_search,
)
from ovo.data.sampling import (
    CorruptImageError,
    EvalSampler,
    SeededDataset,
    TrainSampler,
    mix_seed,
    mix_seeds,
    seeded_rngs,
)
from ovo.data.transforms import AugConfig, build_eval_transform, build_train_transform

__all__ = [
    "DEFAULT_DATA_DIR",
    "SEARCH_SPLIT_SEED",
    "AugConfig",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CorruptImageError",
    "DigitsDataModule",
    "EvalSampler",
    "FakeDataModule",
    "ImageClassificationDataModule",
    "ImageFolderDataModule",
    "ImageNetDataModule",
    "SeededDataset",
    "TrainSampler",
    "build_eval_transform",
    "build_train_transform",
    "make_datamodule",
    "mix_seed",
    "mix_seeds",
    "seeded_rngs",
    "split_search",
]
