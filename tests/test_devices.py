"""The numeric paths that change with the device, on every device present (``device``: cpu, and
cuda where a GPU is; ``make gpu-check`` runs ``pytest -m cuda`` on a GPU machine): export
parity, the search's cached batched evaluation, and short trainings with the GPU presets."""

from __future__ import annotations

import random

import pytest
import torch
from lightning.fabric import Fabric

from conftest import cuda_only
from ovo.export import export_subnet
from ovo.scoring import SubnetEvaluator
from ovo.space import SearchSpace
from ovo.supernet import SuperViT, ViTConfig

from helpers import FAST, run_module

SPACE = SearchSpace([16, 24], [1, 2, 3], [1, 2], [1.0, 2.0], head_dim=8, name="micro")
CFG = ViTConfig(img_size=16, patch_size=8, num_classes=5, drop_path_rate=0.0)


def archs(n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [SPACE.min_arch, SPACE.max_arch] + [SPACE.sample(rng) for _ in range(n)]


def test_export_logits_equal_supernet_logits_on(device):
    torch.manual_seed(0)
    net = SuperViT(SPACE, CFG).to(device).eval()
    x = torch.randn(4, 3, 16, 16, device=device)
    for arch in archs(5):
        with torch.no_grad():
            expected = net(x, arch)
            got = export_subnet(net, arch).to(device).eval()(x)
        scale = expected.abs().max().clamp_min(1.0)
        assert (got - expected).abs().max() <= 1e-5 * scale, arch.short()


def test_cached_evaluation_equals_direct_scoring_on(device):
    """The search's evaluator (batches kept on the device across calls) gives, on its second
    call from the cache, exactly what scoring each arch directly gives."""
    torch.manual_seed(0)
    net = SuperViT(SPACE, CFG)
    data = [(torch.randn(6, 3, 16, 16), torch.randint(0, 5, (6,))) for _ in range(3)]
    fabric = Fabric(accelerator=device.type, devices=1, precision="32-true")
    evaluator = SubnetEvaluator(net, data, fabric, cache=True)
    chosen = archs(4, seed=1)
    first = evaluator.evaluate(chosen)
    assert evaluator._cached is not None and evaluator._cached[0][0].device.type == device.type
    second = evaluator.evaluate(chosen)  # from the cache
    with torch.no_grad():
        for arch, a, b in zip(chosen, first, second):
            hits = sum(
                int((net(x.to(device), arch).argmax(1) == y.to(device)).sum()) for x, y in data
            )
            assert a.acc1 == b.acc1 == hits / 18, arch.short()
            assert a.num_images == b.num_images == 18


@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
@pytest.mark.parametrize("_", [pytest.param("cuda", marks=cuda_only)])
def test_fast_dev_run_on_one_gpu(trainer, _, tmp_path):
    """``trainer=gpu`` and ``trainer=ddp`` (ovo_ddp on one GPU: the launch and the strategy's
    step, but not the gradient all-reduce, which needs two GPUs) train and validate."""
    args = [a for a in FAST if not a.startswith("trainer=")]
    code = run_module(
        "ovo.train",
        [
            *args,
            f"trainer={trainer}",
            "trainer.devices=1",
            "+trainer.fast_dev_run=2",
            f"hydra.run.dir={tmp_path}",
        ],
    )
    assert code == 0
