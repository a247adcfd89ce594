"""What every data module shares (:class:`ImageClassificationDataModule`): three splits (train,
search, val), sharded by the module itself (run the trainer with ``use_distributed_sampler=False``), reproducible order
and augmentation (see :mod:`ovo.data.sampling`), and a held-out search split:

* ``search_per_class`` images of every class are taken out of the TRAIN split, never trained on,
  and used by the architecture search for fitness (AutoFormer's protocol: never rank candidates on
  the val/test split). The choice depends on a fixed constant, the class and the dataset only -
  not on ``seed`` - so the training run and the later search run hold out the same images
  whatever seeds they use. Changing the data (files, ``val_fraction``) changes it.
* Batches are ``(images float32 [B, C, H, W], normalized; labels int64 [B])``. The train loader
  drops its last incomplete batch (timm's Mixup needs even batches).

Eval loaders (val = test, search) give rank ``r`` the in-order shard ``indices[r::world]`` with no
padding, so shards may differ by one sample: reduce eval metrics at epoch end (torchmetrics), not
with per-step collectives.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from ovo import threads
from ovo.data.sampling import EvalSampler, SeededDataset, Source, TrainSampler, mix_seed
from ovo.data.splits import SPLITS, check_eval_split
from ovo.data.transforms import AugConfig, build_eval_transform, build_train_transform
from ovo.errors import ConfigError, DataError

DEFAULT_DATA_DIR = "~/.cache/ovo-data"
# The held-out splits' seeds. Constants, never the run's seed: training, search and evaluation
# must agree on them.
SEARCH_SPLIT_SEED = 0x5EA2C4
VAL_SPLIT_SEED = 0x7A1_5E7
STRATIFIED_SALT = 0x57_2A7


def split_held_out(
    targets: np.ndarray,
    pool: np.ndarray,
    per_class: int,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    *,
    salt: int = SEARCH_SPLIT_SEED,
    key: str = "search_per_class",
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``pool`` (indices into ``targets``) into (rest, held out): ``per_class`` of each
    class held out.

    Class ``c`` draws with the seed ``(salt, c)``, so the choice is stable across runs and seeds,
    and nested: a larger ``per_class`` keeps the smaller one's images. ``key`` names the setting
    in errors.
    """
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    if per_class <= 0:
        return pool, np.empty(0, dtype=np.int64)
    labels = targets[pool]
    chosen = []
    for c in range(num_classes):
        members = pool[labels == c]
        if len(members) <= per_class:
            name = class_names[c] if class_names is not None else str(c)
            raise DataError(
                f"class '{name}' has {len(members)} training images left, but {key}="
                f"{per_class} holds out {per_class} and must leave some for training; set "
                f"data.{key} to at most {max(len(members) - 1, 0)}"
            )
        rng = np.random.default_rng(mix_seed(salt, c))
        chosen.append(members[rng.permutation(len(members))[:per_class]])
    held = np.sort(np.concatenate(chosen))
    return np.setdiff1d(pool, held, assume_unique=True), held


def split_search(
    targets: np.ndarray,
    pool: np.ndarray,
    per_class: int,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(train, search): the search split held out of ``pool`` (see :func:`split_held_out`)."""
    return split_held_out(targets, pool, per_class, num_classes, class_names)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a SLURM allocation; the
    machine's count where there is no mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cap_workers(num_workers: int) -> int:
    """``num_workers`` capped at :func:`usable_cores`, said once (rank 0) when capped: a
    checkpoint's data config comes from the machine it was trained on, and more loader workers
    than cores only slow loading down (PyTorch warns about it twice per loader). The loaded
    batches do not depend on the worker count (every sample is seeded from its index)."""
    cores = usable_cores()
    if num_workers > cores:
        _say(
            f"ovo: data.num_workers={num_workers} is more than the {cores} CPU cores this "
            f"process may use; using num_workers={cores}"
        )
    return min(num_workers, cores)


@rank_zero_only
def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_positive(name: str, value: int, minimum: int = 1) -> int:
    if int(value) < minimum:
        raise ConfigError(f"data.{name} must be >= {minimum}, got {value}")
    return int(value)


class ImageClassificationDataModule(L.LightningDataModule):
    """Base of ovo's data modules: splits, seeded samplers, loaders (see the module docstring).

    Args:
        root: data directory (meaning depends on the subclass; ``~`` is expanded).
        batch_size: train batch size per device.
        eval_batch_size: val/test/search batch size per device (default ``2 * batch_size``).
        num_workers: DataLoader worker processes (0 = load in the training process).
        img_size: side of the square model input.
        seed: shuffling and augmentation seed (not the search split's, see module docstring).
        search_per_class: images per class held out of the train split for the search (0 = none).
        val_per_class: images per class held out of the train split (disjoint from the search
            split) as the validation split; the dataset's own val/test images then form the
            ``test`` split, scored once for reported numbers. 0 = no carved split: ``val`` is the
            dataset's val/test images (as before this option existed).
        aug: augmentation options (:class:`~ovo.data.transforms.AugConfig` keys) over the
            subclass' defaults ``default_aug``.
        pin_memory, persistent_workers: passed to the DataLoaders (the latter only with workers).

    Subclasses set ``num_classes``, ``in_chans``, ``mean``, ``std`` in ``__init__`` (so a model
    can be built before ``setup``) and implement ``_load_sources``.
    """

    default_aug: ClassVar[Mapping[str, Any]] = {}
    name: ClassVar[str] = "data"
    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        img_size: int = 32,
        seed: int = 0,
        search_per_class: int = 0,
        val_per_class: int = 0,
        aug: Mapping[str, Any] | None = None,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser() if root is not None else None
        self.batch_size = check_positive("batch_size", batch_size)
        self.eval_batch_size = check_positive(
            "eval_batch_size", 2 * batch_size if eval_batch_size is None else eval_batch_size
        )
        self.num_workers = cap_workers(check_positive("num_workers", num_workers, 0))
        self.img_size = check_positive("img_size", img_size)
        self.seed = int(seed)
        self.search_per_class = check_positive("search_per_class", search_per_class, 0)
        self.val_per_class = check_positive("val_per_class", val_per_class, 0)
        self.aug = AugConfig.resolve(self.default_aug, aug)
        self.pin_memory, self.persistent_workers = bool(pin_memory), bool(persistent_workers)
        self.classes: list[str] | None = None
        self._indices: dict[str, np.ndarray] | None = None
        self._sources: dict[str, Source] = {}
        self._datasets: dict[str, SeededDataset] = {}

    def _set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if not len(self.mean) == len(self.std) == self.in_chans:
            raise ConfigError(
                f"data.mean and data.std need {self.in_chans} values (in_chans), got "
                f"{len(self.mean)} and {len(self.std)}"
            )

    # ---- to implement ------------------------------------------------------------------------
    def _load_sources(self) -> tuple[Source, Source, np.ndarray, np.ndarray]:
        """(train source, val source, train pool, val pool): pools index into their source."""
        raise NotImplementedError

    def build_transforms(self) -> tuple[Any, Any]:
        """(train transform, eval transform)."""
        return (
            build_train_transform(self.aug, self.img_size, self.mean, self.std),
            build_eval_transform(self.aug, self.img_size, self.mean, self.std),
        )

    @property
    def skip_corrupt(self) -> bool:
        return False

    # ---- Lightning hooks ---------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load labels, make the splits and the datasets (idempotent; every stage gets all)."""
        if self._indices is not None:
            return
        train_src, test_src, train_pool, test_pool = self._load_sources()
        targets, k, names = train_src.targets, self.num_classes, self.classes
        train_idx, search_idx = split_search(targets, train_pool, self.search_per_class, k, names)
        train_idx, val_idx = split_held_out(
            targets,
            train_idx,
            self.val_per_class,
            k,
            names,
            salt=VAL_SPLIT_SEED,
            key="val_per_class",
        )
        test_idx = np.sort(test_pool)
        carved = self.val_per_class > 0
        self._indices = {
            "train": train_idx,
            "search": search_idx,
            "val": val_idx if carved else test_idx,
            "test": test_idx,
        }
        self._sources = {
            "train": train_src,
            "search": train_src,
            "val": train_src if carved else test_src,
            "test": test_src,
        }
        train_tf, eval_tf = self.build_transforms()
        self._datasets = {
            split: SeededDataset(
                self._sources[split],
                train_tf if split == "train" else eval_tf,
                self._indices[split],
                self.skip_corrupt,
            )
            for split in SPLITS
        }

    def _ensure_setup(self) -> dict[str, np.ndarray]:
        # Dataloaders work without a trainer (the search, notebooks): set up on first use.
        if self._indices is None:
            self.setup()
        assert self._indices is not None
        return self._indices

    def split_indices(self) -> dict[str, np.ndarray]:
        """Indices of every split (``train``, ``search`` and a carved ``val`` into the train
        source; ``test``, and ``val`` when not carved, into the dataset's val/test source)."""
        return {k: v.copy() for k, v in self._ensure_setup().items()}

    def sample_ids(self, split: str) -> list[str]:
        """Unique names (file paths, ``<source>[<i>]``) of a split's samples, comparable across
        splits: the train and search splits share a source, and digits' val split shares it too.
        """
        indices = self._ensure_setup()[split]
        source = self._sources[split]
        return [source.sample_id(int(i)) for i in indices]

    def world_rank(self) -> tuple[int, int]:
        """(world size, rank): the trainer's when attached, else torch.distributed's (e.g. under
        a launched Fabric: make the loaders after ``fabric.launch()``), else (1, 0)."""
        if self.trainer is not None:
            return int(self.trainer.world_size), int(self.trainer.global_rank)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _loader(
        self, dataset: SeededDataset, sampler: Any, batch_size: int, drop_last: bool
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            drop_last=drop_last,
            # one thread per worker (ovo.threads); samples are seeded by key, so Lightning's
            # worker seeding, which this replaces, changed nothing they draw
            worker_init_fn=threads.worker_init,
        )

    def train_sampler(self) -> TrainSampler:
        world, rank = self.world_rank()
        return TrainSampler(self._ensure_setup()["train"], self.seed, world, rank)

    def train_dataloader(self) -> DataLoader:
        sampler = self.train_sampler()
        if len(sampler) < self.batch_size:
            raise DataError(
                f"the train split has {len(sampler)} images per device, fewer than "
                f"data.batch_size={self.batch_size} (the last partial batch is dropped); "
                "lower data.batch_size"
            )
        return self._loader(self.train_dataset, sampler, self.batch_size, drop_last=True)

    @property
    def train_dataset(self) -> SeededDataset:
        return self.dataset("train")

    def dataset(self, split: str) -> SeededDataset:
        """The dataset of ``split`` (train: augmented; the others: the eval transform)."""
        self._ensure_setup()
        return self._datasets[split]

    def eval_dataloader(self, split: str) -> DataLoader:
        """The in-order, sharded, un-augmented loader of ``split``: val, test or search."""
        if check_eval_split(split) == "search":
            return self.search_dataloader()
        return self._eval_loader(split)

    def _eval_loader(self, split: str) -> DataLoader:
        indices = self._ensure_setup()[split]
        return self._loader(
            self._datasets[split],
            EvalSampler(indices, *self.world_rank()),
            self.eval_batch_size,
            False,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def search_dataloader(self, stratified_seed: int | None = None) -> DataLoader:
        """The held-out search split with the eval transform (for the search's fitness).

        With ``stratified_seed`` the split comes in a seeded, class-stratified order (see
        :func:`stratified_order`): every prefix holds the classes in equal shares, so a
        successive-halving search can score archs on a prefix first."""
        if self.search_per_class == 0:
            raise DataError(
                "this data config holds out no search split (data.search_per_class=0); set "
                "data.search_per_class (e.g. 100) for training and search alike"
            )
        if stratified_seed is None:
            return self._eval_loader("search")
        indices = self._ensure_setup()["search"]
        labels = self._sources["search"].targets[indices]
        order = indices[stratified_order(labels, stratified_seed)]
        return self._loader(
            self._datasets["search"],
            EvalSampler(order, *self.world_rank()),
            self.eval_batch_size,
            False,
        )


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of ``range(len(labels))`` that deals the classes round-robin (each class
    shuffled with ``seed``; the class order of every round shuffled too): any prefix holds every
    class within one image of its share. A split stored class by class would otherwise give a
    prefix of the first classes only."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(mix_seed(STRATIFIED_SALT, seed))
    queues = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order: list[int] = []
    for round_ in range(max((len(q) for q in queues), default=0)):
        members = [q[round_] for q in queues if round_ < len(q)]
        order.extend(int(m) for m in rng.permutation(members))
    return np.asarray(order, dtype=np.int64)


def datamodule_from_config(config: Mapping[str, Any]) -> ImageClassificationDataModule:
    """The data module a data config describes (``_target_`` + constructor arguments); a key
    its class does not take is a :class:`ConfigError` naming it."""
    try:
        return instantiate(config, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
            key = str(cause).rsplit("argument", 1)[-1].strip(" '\"")
            target = str(config.get("_target_", "the data module")).rsplit(".", 1)[-1]
            raise ConfigError(
                f"unknown setting data.{key}: {target} does not take it; drop it or pick the "
                "data config that has it"
            ) from err
        raise
