"""Seeds, samplers and the seeded dataset wrapper: reproducible order and augmentation.

The trainer runs with ``use_distributed_sampler=False``; these samplers do the sharding.

* :class:`TrainSampler` shuffles with a permutation that is a pure function of ``(seed, epoch)``
  and gives rank ``r`` the shard ``perm[r::world]`` (padded or truncated to equal shard sizes, as
  ``DistributedSampler``). It yields keys ``(index, sample_seed)`` with ``sample_seed`` a pure
  function of ``(seed, epoch, index)``.
* :class:`SeededDataset` seeds the ``torch``, ``random`` and ``numpy`` global RNGs from
  ``sample_seed`` before running the random transform, so a sample gets the same augmentation in
  epoch ``e`` whatever the number of workers, the batch size or the rank that loads it.
* :class:`EvalSampler` yields plain indices ``indices[rank::world]``: exact counts, no padding.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from ovo.errors import ConfigError, DataError

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
# Salts keep the streams derived from the same user seed apart.
_PERM_SALT = 0x0E9A_51B1
_SAMPLE_SALT = 0x5A3B_1E5D


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # uint64 arithmetic on arrays wraps modulo 2**64, which is what splitmix64 wants.
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def mix_seeds(*values: int | np.ndarray) -> np.ndarray:
    """63-bit seeds that are a pure, well-mixed function of ``values`` (broadcast, order matters).

    Unlike ``seed + epoch`` (``DistributedSampler``), nearby inputs give unrelated streams.
    """
    arrays = [np.atleast_1d(np.asarray(v, dtype=np.int64)).view(np.uint64) for v in values]
    shape = np.broadcast_shapes(*(np.shape(v) for v in values))
    # Work on >= 1-d arrays: numpy warns about wrap-around on scalars, not on arrays.
    h = np.zeros(np.broadcast_shapes(*(a.shape for a in arrays)), dtype=np.uint64)
    for a in arrays:
        h = _splitmix64(h ^ a)
    return (h >> np.uint64(1)).astype(np.int64).reshape(shape)


def mix_seed(*values: int) -> int:
    """A single 63-bit seed derived from ``values`` (see :func:`mix_seeds`)."""
    return int(mix_seeds(*values))


def _check_replicas(num_replicas: int, rank: int) -> None:
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ConfigError(f"rank {rank} is not in [0, {num_replicas}) for {num_replicas} replicas")


class TrainSampler(Sampler[tuple[int, int]]):
    """Seeded, epoch-aware, sharded shuffling over ``indices``; yields ``(index, sample_seed)``.

    The epoch's permutation depends on ``(seed, epoch)`` only, so every rank computes the same
    one and takes its own shard. Without ``drop_last`` the permutation is padded by repeating its
    head so that every rank gets ``ceil(n / world)`` keys; with it, the tail is dropped.
    """

    def __init__(
        self,
        indices: Sequence[int] | np.ndarray,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        shuffle: bool = True,
    ) -> None:
        _check_replicas(num_replicas, rank)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.seed, self.num_replicas, self.rank = int(seed), int(num_replicas), int(rank)
        self.drop_last, self.shuffle = drop_last, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n, w = len(self.indices), self.num_replicas
        return n // w if self.drop_last else -(-n // w)

    def epoch_indices(self) -> np.ndarray:
        """All ranks' indices of this epoch, in order, before sharding (padded/truncated)."""
        order = self.indices
        if self.shuffle:
            rng = np.random.default_rng(mix_seed(_PERM_SALT, self.seed, self.epoch))
            order = order[rng.permutation(len(order))]
        total = len(self) * self.num_replicas
        if total > len(order):  # pad by cycling from the head, as DistributedSampler does
            order = np.resize(order, total)
        return order[:total]

    def shard(self) -> np.ndarray:
        """This rank's indices of this epoch."""
        return self.epoch_indices()[self.rank :: self.num_replicas]

    def sample_seeds(self, indices: np.ndarray) -> np.ndarray:
        """The augmentation seed of each index in this epoch: a function of (seed, epoch, index)."""
        return mix_seeds(_SAMPLE_SALT, self.seed, self.epoch, indices)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        mine = self.shard()
        return iter(zip(mine.tolist(), self.sample_seeds(mine).tolist()))


class EvalSampler(Sampler[int]):
    """In-order shard ``indices[rank::world]`` with no padding, so every sample counts once."""

    def __init__(
        self, indices: Sequence[int] | np.ndarray, num_replicas: int = 1, rank: int = 0
    ) -> None:
        _check_replicas(num_replicas, rank)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.num_replicas, self.rank = int(num_replicas), int(rank)

    def __len__(self) -> int:
        return len(self.indices[self.rank :: self.num_replicas])

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices[self.rank :: self.num_replicas].tolist())


@contextmanager
def seeded_rngs(seed: int, restore: bool | None = None) -> Iterator[None]:
    """Seed the ``random``, ``numpy`` and ``torch`` (CPU) global RNGs for the block.

    timm's and torchvision's transforms draw from all three global RNGs and take no generator, so
    seeding them per sample is the only way to make augmentation a function of the sample key
    (about 10 us per sample). ``restore`` (default: only in the main process, i.e. with
    ``num_workers=0``) puts the previous states back afterwards, so the trainer's own streams
    (dropout, drop-path, Mixup's numpy draws) are not reset to a per-sample seed; worker processes
    skip it (~100 us, mostly numpy's state copy) since nothing else draws from their globals.
    """
    if restore is None:
        restore = get_worker_info() is None
    if restore:
        states = random.getstate(), np.random.get_state(), torch.default_generator.get_state()
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)  # numpy's legacy seeding takes 32 bits
    # The CPU generator only: torch.manual_seed also seeds every accelerator (~100x slower).
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        if restore:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.default_generator.set_state(states[2])


class CorruptImageError(DataError):
    """An image file that cannot be decoded (truncated, not an image...)."""


class Source(Protocol):
    """Raw samples of one split, addressed by index; labels known without decoding images."""

    targets: np.ndarray  # int64 label of every sample

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[Any, int]:
        """(image, label); raises :class:`CorruptImageError` when the file cannot be decoded."""
        ...

    def sample_id(self, index: int) -> str:
        """A unique, stable name of the sample (file path, or ``<split>[<index>]``)."""
        ...


class SeededDataset(Dataset):
    """``source`` with ``transform``; keys are source indices or ``(index, sample_seed)`` pairs.

    With a ``sample_seed`` the transform runs under :func:`seeded_rngs`. ``pool`` (the indices
    this dataset serves) is where a corrupt sample's substitute is taken from when
    ``skip_corrupt``: the next decodable index of the pool, cyclically. That is deterministic and
    never leaks a sample of another split (say, a held-out search image) into this one.
    """

    def __init__(
        self,
        source: Source,
        transform: Callable[[Any], torch.Tensor] | None,
        pool: Sequence[int] | np.ndarray | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.source, self.transform, self.skip_corrupt = source, transform, skip_corrupt
        self.pool = np.sort(np.arange(len(source)) if pool is None else np.asarray(pool, np.int64))

    def __len__(self) -> int:
        return len(self.pool)

    def _load(self, index: int) -> tuple[Any, int]:
        try:
            return self.source.load(index)
        except CorruptImageError as err:
            if not self.skip_corrupt:
                raise
            start = int(np.searchsorted(self.pool, index))
            for step in range(1, len(self.pool)):
                other = int(self.pool[(start + step) % len(self.pool)])
                try:
                    sample = self.source.load(other)
                except CorruptImageError:
                    continue
                cause = err.__cause__ or err
                warnings.warn(
                    f"skip_corrupt: cannot decode {self.source.sample_id(index)} "
                    f"({type(cause).__name__}: {cause}); using {self.source.sample_id(other)}",
                    stacklevel=2,
                )
                return sample
            raise DataError(f"{err}; and no other image of this split could be decoded") from err

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, int]:
        index, sample_seed = key if isinstance(key, tuple | list) else (key, None)
        image, label = self._load(int(index))
        if self.transform is None:
            return image, label
        if sample_seed is None:
            return self.transform(image), label
        with seeded_rngs(int(sample_seed)):
            return self.transform(image), label
