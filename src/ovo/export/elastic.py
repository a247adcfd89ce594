"""An elastic release: the supernet's weights once, and the named subnets it serves.

In the spirit of Gemma 3n's slicing CSV, a folder holds

- ``supernet.safetensors``: every weight of the supernet (each subnet uses their leading slices);
- ``elastic.json``: the space, the model settings and the head dim the weights belong to, and
  timm's preprocessing (format ``ovo.elastic``, version 1);
- ``slices.csv``: one named subnet per row (``name, embed_dim, depth, heads_0 .. heads_{D-1},
  mlp_ratio_0 .. mlp_ratio_{D-1}`` then its costs and accuracies, as a search's ``front.csv``).

:func:`load_slice` returns one of them, by name, as the stock timm ``VisionTransformer``
:func:`~ovo.export.timm_vit.export_subnet` makes: its logits are those of the same subnet
exported alone (``ovo.export family=...``), bit for bit.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer

from ovo.atomic import atomic_path, atomic_write_json, atomic_write_text
from ovo.errors import ConfigError
from ovo.export.timm_vit import export_subnet
from ovo.space import Arch, SearchSpace
from ovo.supernet import SuperViT, ViTConfig

ELASTIC_FORMAT = "ovo.elastic"
ELASTIC_VERSION = 1
WEIGHTS, CONFIG, SLICES = "supernet.safetensors", "elastic.json", "slices.csv"
FACTS = ("params", "macs", "latency_ms", "acc", "final_split", "final_acc1", "final_acc5")


@dataclass(frozen=True)
class Slice:
    """One named subnet of an elastic release, with what is known of it."""

    name: str
    arch: Arch
    facts: Mapping[str, Any]  # params, macs, latency_ms, acc, final_split, final_acc1, final_acc5


def slices_csv(slices: Sequence[Slice], depth: int) -> str:
    """``slices.csv``'s text: one row per slice, layers up to ``depth`` (empty past a depth)."""
    columns = ["name", "embed_dim", "depth"]
    columns += [f"heads_{i}" for i in range(depth)] + [f"mlp_ratio_{i}" for i in range(depth)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*columns, *FACTS])
    for s in slices:
        a = s.arch
        pad = [""] * (depth - a.depth)
        row = [s.name, a.embed_dim, a.depth, *a.num_heads, *pad, *a.mlp_ratio, *pad]
        writer.writerow(row + ["" if s.facts.get(k) is None else s.facts[k] for k in FACTS])
    return out.getvalue()


def write_elastic(
    folder: str | Path,
    net: SuperViT,
    slices: Sequence[Slice],
    data_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``net``'s weights once and ``slices`` into ``folder`` (each file atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for s in slices:
        net.space.validate(s.arch)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    atomic_write_json(
        folder / CONFIG,
        {
            "format": ELASTIC_FORMAT,
            "version": ELASTIC_VERSION,
            "space": net.space.to_dict(),
            "model": net.cfg.to_dict(),
            "data_config": dict(data_config) if data_config else None,
            "slices": [s.name for s in slices],
        },
    )
    atomic_write_text(folder / SLICES, slices_csv(slices, max(net.space.depth)))
    return folder


def read_slices(folder: str | Path, space: SearchSpace) -> dict[str, Arch]:
    """The named archs of ``folder/slices.csv``, each checked against ``space``."""
    path = Path(folder) / SLICES
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except OSError as err:
        raise ConfigError(f"{path} cannot be read ({err.strerror or err})") from None
    out: dict[str, Arch] = {}
    for row in rows:
        name = row.get("name", "")
        try:
            depth = int(row["depth"])
            arch = Arch(
                int(row["embed_dim"]),
                tuple(int(row[f"heads_{i}"]) for i in range(depth)),
                tuple(float(row[f"mlp_ratio_{i}"]) for i in range(depth)),
            )
        except (KeyError, ValueError, TypeError) as err:
            raise ConfigError(f"{path}: slice {name!r} is a damaged row ({err!r})") from None
        try:
            out[name] = space.validate(arch)
        except ConfigError as err:
            raise ConfigError(
                f"{path}: slice {name!r} is not an arch of space '{space.name}' ({err}); "
                "the file does not belong to these weights"
            ) from None
    return out


def load_supernet_weights(folder: str | Path) -> SuperViT:
    """The supernet of an elastic folder, its weights loaded (safetensors + JSON only)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{folder} is not an elastic release ({CONFIG}: {err}); make one with "
            "python -m ovo.export family=<search dir> elastic=true"
        ) from None
    if meta.get("format") != ELASTIC_FORMAT or int(meta.get("version", 0)) > ELASTIC_VERSION:
        raise ConfigError(
            f"{folder / CONFIG} is not an ovo elastic release of version <= {ELASTIC_VERSION}"
        )
    space = SearchSpace.from_dict(meta["space"])
    net = SuperViT(space, ViTConfig.from_dict(meta["model"]))
    net.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
    return net.eval()


def load_slice(folder: str | Path, name: str) -> VisionTransformer:
    """Subnet ``name`` of the elastic release in ``folder`` as a stock timm model (eval mode)."""
    net = load_supernet_weights(folder)
    archs = read_slices(folder, net.space)
    if name not in archs:
        raise ConfigError(
            f"{Path(folder) / SLICES} has no slice {name!r}; its slices: {', '.join(archs)}"
        )
    with torch.no_grad():
        model = export_subnet(net, archs[name])
    return model.eval()
