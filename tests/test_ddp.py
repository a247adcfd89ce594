"""``trainer.strategy=ovo_ddp`` through the real strategy: two gloo processes train what one
process trains on the concatenated batch, and the strategy's checks (DDP arguments, same slices on
every rank, a non-finite loss on one rank) stop every rank with one clear error."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

import ovo.training.ddp
from ovo.errors import ConfigError
from ovo.space import Arch, SearchSpace
from ovo.supernet import SuperViT, ViTConfig
from ovo.supernet.grads import SliceGrads
from ovo.training.ddp import RankMismatchError, SupernetDDPStrategy, average_gradients
from ovo.training.distill import label_loss
from ovo.training.module import NonFiniteLossError, OVOModule

from helpers import FAST, run_module

SPACE = {"embed_dim": [16, 24], "depth": [1, 2], "num_heads": [1, 2], "mlp_ratio": [1.0, 2.0]}
SPACE |= {"head_dim": 8, "name": "micro"}
MODEL = {"img_size": 16, "patch_size": 8, "num_classes": 5, "drop_path_rate": 0.0}
WORLD, PER_RANK, STEPS = 2, 4, 3
TOLERANCE = 1e-5  # float32: summation order differs (two half-batch means vs one mean)


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = WORLD * PER_RANK * STEPS
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 5, (n,), generator=g)


def shard(rank: int, world: int) -> slice | torch.Tensor:
    """Rank ``rank``'s samples: its quarter of each global batch of ``WORLD * PER_RANK``."""
    if world == 1:
        return slice(None)
    step = WORLD * PER_RANK
    return torch.cat(
        [
            torch.arange(i + rank * PER_RANK, i + (rank + 1) * PER_RANK)
            for i in range(0, step * STEPS, step)
        ]
    )


class Data(L.LightningDataModule):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)


def fit(rank: int, world: int, nan: bool = False) -> OVOModule:
    """A few steps of OVO training (drop path, Mixup, augmentation off) on ``rank``'s shard."""
    L.seed_everything(0)
    module = OVOModule(
        space=SPACE,
        model=MODEL,
        optimizer={"opt": "adamw", "lr": 1e-3, "weight_decay": 0.05},
        panel={"num_random": 1},
        lr_base_batch_size=None,
    )
    x, y = data()
    x, y = x[shard(rank, world)], y[shard(rank, world)]
    if nan and rank == 1:
        x[PER_RANK:] = float("nan")  # rank 1's second step: a non-finite loss there only
    # a rank left waiting in a collective fails the test in a minute instead of hanging it
    timeout = timedelta(seconds=90)
    strategy = (
        SupernetDDPStrategy(process_group_backend="gloo", timeout=timeout) if world > 1 else "auto"
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=world,
        strategy=strategy,
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, Data(x, y, PER_RANK * (WORLD // world)))
    return module


def weights(module: OVOModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.net.state_dict().items()}


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(WORLD),
        NODE_RANK="0",
        LOCAL_RANK=str(rank),  # Lightning then joins these processes instead of launching
        RANK=str(rank),
    )
    torch.set_num_threads(1)
    result = {"real": weights(fit(rank, WORLD))}
    real = ovo.training.ddp.average_gradients
    ovo.training.ddp.average_gradients = lambda grads, group=None: None  # the all-reduce, gone
    try:
        result["noop"] = weights(fit(rank, WORLD))
    finally:
        ovo.training.ddp.average_gradients = real
    try:
        fit(rank, WORLD, nan=True)
    except NonFiniteLossError as err:
        result["nan"] = str(err)
    # the slice check, by hand: rank 1 runs another arch than rank 0
    net = SuperViT(SearchSpace.from_dict(SPACE), ViTConfig.from_dict(MODEL))
    grads = SliceGrads(net.parameters())
    arch = Arch(24, (2,), (2.0,)) if rank == 0 else Arch(16, (2,), (2.0,))
    x, y = data()
    label_loss(net(x[:2], arch), y[:2]).backward()
    try:
        average_gradients(grads)
    except RankMismatchError as err:
        result["mismatch"] = str(err)
    torch.save(result, f"{out}.rank{rank}")
    dist.barrier()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes x three fits: over a minute on 2 shared cores (see notes/b.md)
def test_two_ranks_train_what_one_process_trains_on_the_concatenated_batch(tmp_path):
    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
    ranks = [torch.load(f"{out}.rank{r}", weights_only=True) for r in range(WORLD)]
    one = weights(fit(0, 1))
    start = weights(fit_zero())
    for name, value in one.items():
        # both ranks hold the same weights, and those of one process on the whole batch
        torch.testing.assert_close(ranks[0]["real"][name], ranks[1]["real"][name], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0]["real"][name], value, rtol=0, atol=TOLERANCE, msg=name)
    assert any(not torch.equal(start[k], one[k]) for k in one)  # it trained
    # without the all-reduce each rank follows its own half batch: the test above would fail
    differ = [k for k in one if (ranks[0]["noop"][k] - one[k]).abs().max() > 10 * TOLERANCE]
    assert differ and any(not torch.equal(ranks[0]["noop"][k], ranks[1]["noop"][k]) for k in one)
    # a non-finite loss on rank 1 only stops both ranks, each with one line saying where
    assert "non-finite loss at step 1" in ranks[1]["nan"], ranks[1].get("nan")
    assert "non-finite loss on another rank at step 1" in ranks[0]["nan"], ranks[0].get("nan")
    # different slices on the two ranks: both refuse to average them
    assert all("different weight slices" in r["mismatch"] for r in ranks)


def fit_zero() -> OVOModule:
    L.seed_everything(0)
    return OVOModule(space=SPACE, model=MODEL, panel={"num_random": 1})


@pytest.mark.parametrize(
    "kwargs",
    [{"find_unused_parameters": True}, {"static_graph": True}, {"ddp_comm_hook": print}],
)
def test_ddp_wrapper_arguments_are_refused(kwargs):
    with pytest.raises(ConfigError, match=f"{next(iter(kwargs))} has nothing to act on"):
        SupernetDDPStrategy(**kwargs)


def test_ddp_wrapper_arguments_are_one_line_from_the_command(tmp_path, capsys):
    strategy = "{_target_:ovo.training.ddp.SupernetDDPStrategy,find_unused_parameters:true}"
    args = [*FAST, f"trainer.strategy={strategy}", f"hydra.run.dir={tmp_path}/run"]
    assert run_module("ovo.train", args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ovo: error:"), err
    assert "find_unused_parameters has nothing to act on" in err[0]
