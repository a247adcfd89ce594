import inspect
import json
import random
import subprocess
import sys
import zipfile
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ovo.data import (
    SEARCH_SPLIT_SEED,
    AugConfig,
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    EvalSampler,
    FakeDataModule,
    ImageClassificationDataModule,
    ImageFolderDataModule,
    ImageNetDataModule,
    TrainSampler,
    build_train_transform,
    mix_seed,
    mix_seeds,
    seeded_rngs,
    split_search,
)
from ovo.errors import ConfigError, DataError
from ovo.paths import conf_dir

from data_fixtures import (
    CIFAR10_CLASSES,
    CIFAR10_ZIP,
    extract_cifar10_subset,
    write_cifar10,
    write_cifar100,
    write_image_folder,
)

HEAVY_AUG = {"auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.5, "hflip": 0.5}


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar100_root(tmp_path_factory):
    return write_cifar100(tmp_path_factory.mktemp("c100"), train_per_class=4, test_per_class=2)


@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("c10"), train_per_class=10, test_per_class=4)


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("folder"))


@pytest.fixture(scope="module")
def real_cifar_root(tmp_path_factory):
    if not CIFAR10_ZIP.is_file():
        pytest.skip(f"{CIFAR10_ZIP} is not on this machine")
    return extract_cifar10_subset(tmp_path_factory.mktemp("real"), {"train": 20, "test": 10})


@pytest.fixture(scope="module")
def digits():
    dm = DigitsDataModule(batch_size=32, search_per_class=5)
    dm.setup("fit")
    return dm


def small_folder_dm(root, **kw):
    kw.setdefault("aug", {"small_image": True})
    return ImageFolderDataModule(root, img_size=16, mean=(0.5,) * 3, std=(0.25,) * 3, **kw)


def first_batch(loader):
    return next(iter(loader))


# ---- attributes, batches ------------------------------------------------------------------------
def test_attributes_before_setup(tmp_path, cifar100_root, folder_root):
    cases = [
        (FakeDataModule(num_classes=7, in_chans=2, img_size=24), 7, 2, 24),
        (DigitsDataModule(), 10, 3, 32),
        (DigitsDataModule(in_chans=1), 10, 1, 32),
        (CIFAR10DataModule(root=tmp_path / "absent"), 10, 3, 32),
        (CIFAR100DataModule(root=cifar100_root), 100, 3, 32),
        (ImageFolderDataModule(folder_root), 3, 3, 224),
        (ImageNetDataModule(tmp_path / "absent"), 1000, 3, 224),
    ]
    for dm, num_classes, in_chans, img_size in cases:
        assert (dm.num_classes, dm.in_chans, dm.img_size) == (num_classes, in_chans, img_size)
        assert len(dm.mean) == len(dm.std) == in_chans
        assert dm._indices is None  # nothing loaded yet
    assert ImageFolderDataModule(folder_root).classes == ["ants", "bees", "wasps"]


@pytest.mark.parametrize("name", ["fake", "digits", "cifar10", "cifar100", "folder", "imagenet"])
def test_batches_shapes_and_dtypes(name, cifar10_root, cifar100_root, folder_root):
    common = {"batch_size": 4, "search_per_class": 1}
    dm = {
        "fake": lambda: FakeDataModule(num_train=64, num_val=16, **common),
        "digits": lambda: DigitsDataModule(img_size=24, aug=HEAVY_AUG, **common),
        "cifar10": lambda: CIFAR10DataModule(cifar10_root, **common),
        "cifar100": lambda: CIFAR100DataModule(cifar100_root, **common),
        "folder": lambda: small_folder_dm(folder_root, **common),
        # DeiT's timm pipeline (RandomResizedCrop, RandAugment, RandomErasing) at 32px.
        "imagenet": lambda: ImageNetDataModule(folder_root, num_classes=3, img_size=32, **common),
    }[name]()
    size, chans = dm.img_size, dm.in_chans
    for loader, batch in (
        (dm.train_dataloader(), 4),
        (dm.val_dataloader(), 8),
        (dm.test_dataloader(), 8),
        (dm.search_dataloader(), 8),
    ):
        x, y = first_batch(loader)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (chans, size, size) and x.shape[0] <= batch and len(y) == len(x)
        assert 0 <= y.min() and y.max() < dm.num_classes
    assert len(dm.search_dataloader().sampler) == dm.num_classes  # 1 per class
    assert len(first_batch(dm.train_dataloader())[1]) == 4  # full train batches only


def test_normalization_on_real_digits(digits):
    x = torch.cat([b[0] for b in digits.val_dataloader()])
    assert len(x) == 360
    assert abs(x.mean().item()) < 0.15 and 0.8 < x.std().item() < 1.2


def test_train_loader_drops_the_last_partial_batch():
    dm = FakeDataModule(num_train=70, num_val=10, batch_size=32)
    assert [len(y) for _, y in dm.train_dataloader()] == [32, 32]
    assert [len(y) for _, y in dm.val_dataloader()] == [10]
    assert dm.eval_batch_size == 64


# ---- splits -------------------------------------------------------------------------------------
def test_digits_has_all_1797_images_and_a_stratified_val_split(digits):
    idx = digits.split_indices()
    assert sum(len(idx[k]) for k in ("train", "search", "val")) == 1797
    assert np.array_equal(idx["val"], idx["test"])  # no carved val split: val is the test split
    assert len(idx["val"]) == 360 and len(idx["search"]) == 50
    targets = digits.train_dataset.source.targets
    assert np.bincount(targets[idx["val"]], minlength=10).min() >= 34  # ~20% of each class


@pytest.mark.parametrize("make", ["digits", "folder", "cifar100"])
def test_carved_val_split_is_balanced_disjoint_and_stable(make, folder_root, cifar100_root):
    def build(seed, val=2):
        search = 1 if make == "cifar100" else 3  # the generated CIFAR-100 has 4 per class
        kw = dict(search_per_class=search, val_per_class=val, seed=seed)
        if make == "digits":
            return DigitsDataModule(**kw)
        if make == "folder":
            return small_folder_dm(folder_root, **kw)
        return CIFAR100DataModule(cifar100_root, **kw)

    dm, plain = build(seed=0), build(seed=0, val=0)
    idx, before = dm.split_indices(), plain.split_indices()
    ids = {split: set(dm.sample_ids(split)) for split in ("train", "search", "val", "test")}
    assert not ids["val"] & (ids["train"] | ids["search"] | ids["test"])
    assert ids["val"] | ids["train"] == set(plain.sample_ids("train"))  # carved from train
    assert np.array_equal(idx["search"], before["search"])  # the search split is unchanged
    assert np.array_equal(idx["test"], before["val"])  # the dataset's own val images: test
    targets = dm.train_dataset.source.targets
    counts = np.bincount(targets[idx["val"]], minlength=dm.num_classes)
    assert counts.tolist() == [2] * dm.num_classes
    assert np.array_equal(build(seed=5).split_indices()["val"], idx["val"])  # not the run's seed
    assert len(dm.val_dataloader().dataset) == 2 * dm.num_classes
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape[-1] == dm.img_size


def test_val_per_class_too_large_names_the_setting():
    with pytest.raises(DataError, match="val_per_class=300 .* at most"):
        DigitsDataModule(val_per_class=300).setup()


@pytest.mark.parametrize("make", ["digits", "folder", "cifar100"])
def test_search_split_disjoint_per_class_and_stable(make, folder_root, cifar100_root):
    def build(seed):
        if make == "digits":
            return DigitsDataModule(search_per_class=7, seed=seed)
        if make == "folder":
            return small_folder_dm(folder_root, search_per_class=3, seed=seed)
        return CIFAR100DataModule(cifar100_root, search_per_class=2, seed=seed)

    dm = build(seed=0)
    ids = {split: dm.sample_ids(split) for split in ("train", "search", "val")}
    assert all(len(set(v)) == len(v) for v in ids.values())
    assert not set(ids["train"]) & set(ids["search"])
    assert not set(ids["val"]) & (set(ids["train"]) | set(ids["search"]))
    idx = dm.split_indices()
    per_class = np.bincount(dm.dataset("search").source.targets[idx["search"]])
    assert per_class.tolist() == [dm.search_per_class] * dm.num_classes
    # Identical in a second construction, also with another training seed (the search run).
    other = build(seed=123).split_indices()
    for split in ("train", "search", "val"):
        assert np.array_equal(idx[split], other[split])


def test_search_split_is_nested_and_uses_a_fixed_seed():
    targets = np.repeat(np.arange(5), 20)
    pool = np.arange(100)
    _, small = split_search(targets, pool, 3, 5)
    train, large = split_search(targets, pool, 6, 5)
    assert set(small) <= set(large) and len(large) == 30 and len(train) == 70
    assert isinstance(SEARCH_SPLIT_SEED, int)


def test_no_search_split_raises_when_asked_for():
    dm = FakeDataModule(num_train=64, num_val=16, search_per_class=0)
    assert len(dm.split_indices()["search"]) == 0
    with pytest.raises(DataError, match="search_per_class=0"):
        dm.search_dataloader()


# ---- order, shards, augmentation ---------------------------------------------------------------
def keys(sampler):
    return list(iter(sampler))


def test_train_order_is_a_function_of_seed_and_epoch():
    a, b = TrainSampler(range(100), seed=3), TrainSampler(range(100), seed=3)
    assert keys(a) == keys(b)
    first = keys(a)
    assert sorted(i for i, _ in first) == list(range(100))
    a.set_epoch(1)
    assert [i for i, _ in keys(a)] != [i for i, _ in first]
    b.set_epoch(1)
    assert keys(a) == keys(b)
    c = TrainSampler(range(100), seed=4)
    assert [i for i, _ in keys(c)] != [i for i, _ in first]
    # The same sample gets another augmentation seed in another epoch.
    seeds0, seeds1 = dict(first), dict(keys(a))
    assert all(seeds0[i] != seeds1[i] for i in range(100))
    assert seeds0[5] == mix_seeds(0x5A3B1E5D, 3, 0, np.array([5]))[0]


@pytest.mark.parametrize("n", [100, 101])
def test_train_shards_are_equal_disjoint_and_cover_the_epoch(n):
    full = TrainSampler(range(n), seed=1)
    shards = [TrainSampler(range(n), seed=1, num_replicas=2, rank=r) for r in range(2)]
    for s in (full, *shards):
        s.set_epoch(5)
    parts = [keys(s) for s in shards]
    assert len(parts[0]) == len(parts[1]) == len(shards[0]) == -(-n // 2)
    indices = [i for part in parts for i, _ in part]
    assert set(indices) == set(range(n))
    assert len(set(indices)) == n  # disjoint, apart from DistributedSampler-style padding
    # The epoch order does not depend on the world size, nor the samples' augmentation seeds.
    interleaved = [k for pair in zip(*parts) for k in pair][:n]
    assert interleaved == keys(full)
    dropped = [TrainSampler(range(n), 1, 2, r, drop_last=True) for r in range(2)]
    dropped_idx = [i for s in dropped for i, _ in keys(s)]
    assert len(dropped_idx) == len(set(dropped_idx)) == 2 * (n // 2)


def test_eval_shards_are_exact_and_in_order():
    indices = np.arange(11) * 3
    shards = [list(EvalSampler(indices, 3, r)) for r in range(3)]
    assert shards[1] == indices[1::3].tolist()
    assert sorted(sum(shards, [])) == indices.tolist()
    with pytest.raises(ConfigError):
        EvalSampler(indices, 2, 2)


def test_datamodule_shards_by_the_trainer_rank():
    dm = FakeDataModule(num_train=100, num_val=11, batch_size=8, seed=2)
    loaders = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        loaders.append((dm.train_dataloader(), dm.val_dataloader()))
    assert [t.sampler.rank for t, _ in loaders] == [0, 1]
    train = [set(i for i, _ in t.sampler) for t, _ in loaders]
    assert not train[0] & train[1] and len(train[0] | train[1]) == 100
    val = [list(v.sampler) for _, v in loaders]
    assert val == [list(range(0, 11, 2)), list(range(1, 11, 2))]
    assert sum(len(y) for _, v in loaders for _, y in v) == 11  # exact, no padding


def test_same_sample_same_augmentation_with_any_worker_count():
    def batches(num_workers):
        dm = DigitsDataModule(batch_size=16, num_workers=num_workers, aug=HEAVY_AUG, seed=7)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(3)
        out = []
        for k, batch in enumerate(loader):
            out.append(batch)
            if k == 2:
                return dm, loader, out

    dm, loader, zero = batches(0)
    _, _, two = batches(2)
    for (x0, y0), (x2, y2) in zip(zero, two):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    # Any rank/worker loading key (index, seed) gets the same tensor, whatever the global RNGs.
    key = next(iter(loader.sampler))
    torch.manual_seed(1)
    random.seed(1)
    a = dm.train_dataset[key][0]
    torch.manual_seed(2)
    np.random.seed(2)
    assert torch.equal(a, dm.train_dataset[key][0]) and torch.equal(a, zero[0][0][0])
    # ... and the augmentation is really random: another seed, another image.
    assert not torch.equal(a, dm.train_dataset[(key[0], key[1] + 1)][0])


def test_seeded_transform_leaves_the_global_rngs_alone():
    def draw():
        return torch.rand(3).tolist(), random.random(), np.random.rand()

    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    expected = draw()
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    with seeded_rngs(mix_seed(1, 2)):
        inside = draw()
    assert draw() == expected and inside != expected


# ---- data sources -------------------------------------------------------------------------------
def test_fake_data_is_deterministic_and_learnable():
    dm = FakeDataModule(num_train=200, num_val=100, aug={"hflip": 0.0})
    again = FakeDataModule(num_train=200, num_val=100, aug={"hflip": 0.0}, seed=9)
    other = FakeDataModule(num_train=200, num_val=100, aug={"hflip": 0.0}, data_seed=1)
    for m in (dm, again, other):
        m.setup()
    x, _ = dm.train_dataset[3]
    assert torch.equal(x, again.train_dataset[3][0])  # the run's seed does not change the data
    assert not torch.equal(x, other.train_dataset[3][0])
    xs, ys = map(torch.cat, zip(*[(x, y) for x, y in dm.val_dataloader()]))
    means = torch.stack([xs[ys == c].mean(0) for c in range(10)])
    assert torch.cdist(means.flatten(1), means.flatten(1)).triu(1)[0, 1:].min() > 5
    # A few SGD steps of a linear model lower the loss.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(3):
        for xb, yb in dm.train_dataloader():
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_digits_are_separable_by_class_means(digits):
    xs, ys = map(torch.cat, zip(*list(digits.train_dataloader())))
    means = torch.stack([xs[ys == c].mean(0) for c in range(10)]).flatten(1)
    xv, yv = map(torch.cat, zip(*list(digits.val_dataloader())))
    accuracy = (torch.cdist(xv.flatten(1), means).argmin(1) == yv).float().mean()
    assert accuracy > 0.8


def test_cifar100_uses_fine_labels_and_names(cifar100_root):
    dm = CIFAR100DataModule(cifar100_root)
    dm.setup()
    assert dm.classes[:2] == ["fine_00", "fine_01"] and len(dm.classes) == 100
    assert len(dm.dataset("train")) == 400 and len(dm.dataset("val")) == 200
    assert np.bincount(dm.train_dataset.source.targets).tolist() == [4] * 100


def test_real_cifar10_jpeg_subset_through_the_imagefolder_config(real_cifar_root):
    cfg = compose_data("imagefolder", real_cifar_root.parent)
    overrides = {"root": str(real_cifar_root), "batch_size": 20, "num_workers": 0}
    dm = instantiate(cfg.data, search_per_class=2, **overrides)
    assert isinstance(dm, ImageFolderDataModule) and dm.classes == CIFAR10_CLASSES
    idx = dm.split_indices()
    assert [len(idx[s]) for s in ("train", "search", "val")] == [180, 20, 100]
    x, y = first_batch(dm.train_dataloader())
    assert x.shape == (20, 3, 32, 32)
    xs, ys = map(torch.cat, zip(*list(dm.val_dataloader())))
    assert np.bincount(ys.numpy()).tolist() == [10] * 10
    # De-normalised, the channel means are close to the README's (0.491, 0.482, 0.447).
    pixel_mean = xs * torch.tensor(dm.std)[:, None, None] + torch.tensor(dm.mean)[:, None, None]
    assert torch.allclose(
        pixel_mean.mean((0, 2, 3)), torch.tensor([0.491, 0.482, 0.447]), atol=0.08
    )


@pytest.mark.slow
def test_full_real_cifar10_jpeg_folder(tmp_path):
    if not CIFAR10_ZIP.is_file():
        pytest.skip(f"{CIFAR10_ZIP} is not on this machine")
    with zipfile.ZipFile(CIFAR10_ZIP) as archive:
        archive.extractall(tmp_path)
    dm = ImageFolderDataModule(
        tmp_path, val_split="test", img_size=32, search_per_class=100, aug={"small_image": True}
    )
    idx = dm.split_indices()
    assert [len(idx[s]) for s in ("train", "search", "val")] == [49000, 1000, 10000]
    assert np.bincount(dm.dataset("val").source.targets).tolist() == [1000] * 10
    x, _ = first_batch(dm.train_dataloader())
    assert x.shape == (64, 3, 32, 32)


# ---- user errors --------------------------------------------------------------------------------
def test_folder_errors(tmp_path, folder_root):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing} does not exist"):
        ImageFolderDataModule(missing)
    deferred = ImageFolderDataModule(missing, num_classes=3)  # the model can still be built
    with pytest.raises(DataError, match="does not exist"):
        deferred.setup()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no 'train/' split folder \(it is empty\).*<class>"):
        ImageFolderDataModule(empty)
    (empty / "images").mkdir()
    with pytest.raises(DataError, match=r"it holds \['images'\]"):
        ImageFolderDataModule(empty)
    (empty / "train").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        ImageFolderDataModule(empty)
    with pytest.raises(DataError, match="3 class folders but data.num_classes=5"):
        ImageFolderDataModule(folder_root, num_classes=5)
    with pytest.raises(DataError, match="no 'valid/' split folder"):
        ImageFolderDataModule(folder_root, val_split="valid").setup()


def test_empty_class_folder_and_too_small_classes(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class={"train": 4, "val": 1})
    for extra in ("000.jpg", "001.png"):
        (root / "train" / "bees" / extra).unlink()
    with pytest.raises(DataError, match=r"class 'bees' has 2 training images.*at most 1"):
        small_folder_dm(root, search_per_class=3).setup()
    (root / "train" / "empty_class").mkdir()
    (root / "train" / "empty_class" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"class folder .*train/empty_class has no images"):
        small_folder_dm(root).setup()


def test_corrupt_images_fail_or_are_skipped(tmp_path):
    root = write_image_folder(tmp_path / "d", per_class={"train": 4, "val": 1})
    truncated = root / "train" / "bees" / "000.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    (root / "train" / "wasps" / "001.png").write_bytes(b"this is not a png")
    dm = small_folder_dm(root, batch_size=12)
    with pytest.raises(DataError, match=r"cannot decode image .*(000\.jpg|001\.png).*skip_corrupt"):
        list(dm.train_dataloader())
    skipping = small_folder_dm(root, batch_size=12, skip_corrupt=True, aug={"hflip": 0.0})
    with pytest.warns(UserWarning, match="skip_corrupt"):
        ((x, y),) = list(skipping.train_dataloader())
    assert x.shape == (12, 3, 16, 16)
    ds = skipping.train_dataset
    bad = ds.source.samples.index((str(truncated), 1))
    with pytest.warns(UserWarning, match=f"cannot decode {truncated}.*using .*bees/001.png"):
        substitute = ds[(bad, 5)]
    assert torch.equal(substitute[0], ds[(bad + 1, 5)][0])  # the next image of the split
    assert substitute[1] == 1


def test_cifar_errors(tmp_path):
    with pytest.raises(DataError) as err:
        CIFAR100DataModule(tmp_path).setup()
    message = str(err.value)
    assert f"{tmp_path}/cifar-100-python/" in message and "train, test, meta" in message
    assert "data.download=true" in message and "\n" not in message
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(b"garbage")
    with pytest.raises(DataError, match="readable CIFAR-10 python pickles"):
        CIFAR10DataModule(tmp_path).setup()
    with pytest.raises(ConfigError, match="num_classes"):
        CIFAR10DataModule(tmp_path, num_classes=100)


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown setting data.aug.hflipp"):
        FakeDataModule(aug={"hflipp": 0.5})
    with pytest.raises(ConfigError, match="batch_size"):
        FakeDataModule(batch_size=0)
    with pytest.raises(DataError, match="fewer than data.batch_size=64"):
        FakeDataModule(num_train=40, num_val=8).train_dataloader()


# ---- transforms and configs ---------------------------------------------------------------------
def test_aug_config_merging_and_timm_transforms():
    aug = AugConfig.resolve(
        {"small_image": True, "hflip": 0.5}, {"hflip": False, "scale": [0.5, 1]}
    )
    assert aug.small_image and aug.hflip == 0.0 and aug.scale == (0.5, 1.0)
    deit = ImageNetDataModule("/nonexistent", num_classes=1000).aug
    assert deit.auto_augment == "rand-m9-mstd0.5-inc1" and deit.re_prob == 0.25
    assert deit.interpolation == "bicubic" and deit.color_jitter == 0.4
    train_tf = build_train_transform(deit, 64, (0.5,) * 3, (0.5,) * 3)
    names = [type(t).__name__ for t in train_tf.transforms]
    assert names[0] == "RandomResizedCropAndInterpolation" and "RandAugment" in names
    assert names[-1] == "RandomErasing"
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 80, 3), np.uint8))
    for s in range(20):  # RandAugment's "increasing" posterize keeps 0 bits at high magnitude
        with seeded_rngs(s):
            assert train_tf(image).shape == (3, 64, 64)


def compose_data(name, data_dir):
    data = yaml.safe_load((conf_dir() / "data" / f"{name}.yaml").read_text())
    return OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "seed": 5, "data": data})


def constructor_args(cls):
    names = set()
    for klass in cls.__mro__:
        if issubclass(klass, ImageClassificationDataModule):
            params = inspect.signature(klass.__init__).parameters.values()
            names |= {p.name for p in params if p.kind is not p.VAR_KEYWORD} - {"self"}
    return names


@pytest.mark.parametrize(
    "name", ["fake", "digits", "cifar10", "cifar100", "imagenet", "imagefolder"]
)
def test_conf_files_match_the_constructors(name, tmp_path, cifar10_root, cifar100_root):
    cfg = compose_data(name, tmp_path)
    keys = set(cfg.data) - {"_target_"}
    assert {"img_size", "num_classes", "in_chans", "seed", "batch_size", "aug"} <= keys
    module, cls_name = cfg.data._target_.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
    assert keys == constructor_args(cls)  # every constructor argument, nothing else
    roots = {"cifar10": cifar10_root, "cifar100": cifar100_root}
    overrides = {"root": str(roots[name]), "search_per_class": 1} if name in roots else {}
    dm = instantiate(cfg.data, num_workers=0, **overrides)
    assert dm.seed == 5 and dm.img_size == cfg.data.img_size
    assert (dm.num_classes, dm.in_chans) == (cfg.data.num_classes, cfg.data.in_chans)
    if name in ("imagenet", "imagefolder"):
        assert dm.root == tmp_path / ("imagenet" if name == "imagenet" else "cifar10")
        return
    dm.setup()
    x, y = first_batch(dm.val_dataloader())
    assert x.shape[1:] == (dm.in_chans, dm.img_size, dm.img_size)


def test_lightning_fit_calls_set_epoch_and_learns():
    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
            self.epochs_seen, self.losses = [], []

        def on_train_epoch_start(self):
            self.epochs_seen.append(self.trainer.train_dataloader.sampler.epoch)

        def training_step(self, batch, _):
            loss = torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            self.losses.append(loss.item())
            return loss

        def validation_step(self, batch, _):
            pass

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    dm = FakeDataModule(num_train=128, num_val=32, num_classes=4, img_size=16, batch_size=16)
    model = Tiny()
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert model.epochs_seen == [0, 1, 2]
    assert np.mean(model.losses[-8:]) < np.mean(model.losses[:8])


DDP_SCRIPT = """
import json, sys
import lightning as L, torch
from ovo.data import FakeDataModule

class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(3 * 8 * 8, 4)

    def on_train_epoch_start(self):
        s = self.trainer.train_dataloader.sampler
        out = {"world": s.num_replicas, "epoch": s.epoch, "keys": list(s),
               "val": list(self.trainer.val_dataloaders.sampler)}
        with open(f"{sys.argv[1]}/rank{self.global_rank}_ep{self.current_epoch}.json", "w") as f:
            json.dump(out, f)

    def training_step(self, batch, _):
        return torch.nn.functional.cross_entropy(self.net(batch[0].flatten(1)), batch[1])

    def validation_step(self, batch, _):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

if __name__ == "__main__":
    dm = FakeDataModule(num_train=50, num_val=11, num_classes=4, img_size=8, batch_size=8)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp",
                        use_distributed_sampler=False, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Tiny(), datamodule=dm)
"""


@pytest.mark.slow
def test_real_ddp_shards_by_trainer_rank_and_sets_epochs(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT)
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=300)
    for epoch in (0, 1):
        runs = [json.loads((tmp_path / f"rank{r}_ep{epoch}.json").read_text()) for r in (0, 1)]
        assert [(r["world"], r["epoch"], len(r["keys"])) for r in runs] == [(2, epoch, 25)] * 2
        shards = [{i for i, _ in r["keys"]} for r in runs]
        assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == 50
        assert [r["val"] for r in runs] == [list(range(0, 11, 2)), list(range(1, 11, 2))]


def test_cache_decoded_gives_the_same_batches_and_reads_each_file_once(folder_root, monkeypatch):
    import PIL.Image

    opened = []
    real_open = PIL.Image.open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("ovo.data.sources.Image.open", counting_open)
    plain = small_folder_dm(folder_root, batch_size=4)
    cached = small_folder_dm(folder_root, batch_size=4, cache_decoded=True)
    for epoch in range(2):
        a = list(plain.train_dataloader())
        opened.clear()
        b = list(cached.train_dataloader())
        assert len(a) == len(b) and all(torch.equal(x[0], y[0]) for x, y in zip(a, b))
        # the first pass decodes each image it serves once, the second none
        assert len(opened) == len(set(opened)) > 0 if epoch == 0 else not opened
