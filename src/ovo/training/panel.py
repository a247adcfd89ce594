"""The validation panel: fixed, named subnets whose accuracy is measured every epoch."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from ovo.errors import ConfigError
from ovo.space import Arch, SearchSpace


def build_panel(
    space: SearchSpace,
    num_random: int = 8,
    seed: int = 0,
    named: Mapping[str, Any] | None = None,
    include_min_max: bool = True,
) -> dict[str, Arch]:
    """The fixed, named subnets validated every epoch: min, max, named archs and ``num_random``
    archs drawn once from ``seed``; the same space and settings give the same panel in any run."""
    panel: dict[str, Arch] = {}
    if include_min_max:
        panel["min"], panel["max"] = space.min_arch, space.max_arch
    for name, arch in (named or {}).items():
        panel[str(name)] = space.validate(arch if isinstance(arch, Arch) else Arch.from_dict(arch))
    rng = random.Random(f"ovo-panel/{seed}")
    for i in range(num_random):
        panel[f"rand{i:02d}"] = space.sample(rng)
    if not panel:
        raise ConfigError(
            "the validation panel is empty: set panel.num_random > 0, "
            "panel.include_min_max=true or add panel.named archs"
        )
    return panel


class PanelMetrics(nn.ModuleDict):
    """Top-1 and top-5 accuracy of every subnet of a panel (torchmetrics: all-reduced across
    ranks when computed)."""

    def __init__(self, panel: Mapping[str, Arch], num_classes: int) -> None:
        k = num_classes
        super().__init__(
            {
                name: MetricCollection(
                    {
                        "acc1": MulticlassAccuracy(k, top_k=1, average="micro"),
                        "acc5": MulticlassAccuracy(k, top_k=min(5, k), average="micro"),
                    }
                )
                for name in panel
            }
        )
        self.panel = dict(panel)

    def score(self, net: Callable[[Tensor, Arch], Tensor], x: Tensor, y: Tensor) -> None:
        """Score every panel subnet on one batch."""
        # Lightning validates under no_grad during fit, under inference_mode in validate/test,
        # and ovo.evaluate/ovo.search under inference_mode: one mode for all of them, so
        # compile=blocks needs one evaluation graph per block shape, not two
        with torch.inference_mode():
            for name, arch in self.panel.items():
                self[name].update(net(x, arch), y)

    def compute_reset(self) -> dict[str, dict[str, Tensor]]:
        """Each subnet's metrics over the batches since the last call, then a reset."""
        results = {}
        for name, metrics in self.items():
            results[name] = dict(metrics.compute())
            metrics.reset()
        return results
