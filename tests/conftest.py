import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


# Numeric tests that mean something on a GPU take `device`: they run on the CPU everywhere and on
# CUDA where a GPU is present (`make gpu-check` runs `pytest -m cuda` on a GPU machine); without
# one the CUDA cases are skipped with this reason, visible in pytest's summary (-ra).
HAS_CUDA = torch.cuda.is_available()
NO_CUDA = "no CUDA device (make gpu-check runs the CUDA cases on a GPU machine)"
cuda_only = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)]


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=cuda_only)])
def device(request) -> torch.device:
    return torch.device(request.param)
