"""Data: LightningDataModules with self-sharded, reproducible loading and a held-out search split.

:mod:`ovo.data.base` holds the shared split/loader machinery, :mod:`ovo.data.catalog` the
datasets, :mod:`ovo.data.sampling` determinism and sharding, :mod:`ovo.data.transforms` the
``aug`` options. Configs name the data modules as ``ovo.data.<Class>``.
"""

from ovo.data.base import (
    DEFAULT_DATA_DIR,
    SEARCH_SPLIT_SEED,
    ImageClassificationDataModule,
    datamodule_from_config,
    split_search,
)
from ovo.data.catalog import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    FakeDataModule,
    ImageFolderDataModule,
    ImageNetDataModule,
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
    "datamodule_from_config",
    "mix_seed",
    "mix_seeds",
    "seeded_rngs",
    "split_search",
]
