"""``python -m ovo.evaluate ckpt_path=... arch=...``: score archs with inherited weights.

Prints and saves (``evaluation.json``, ``evaluation.csv``) a table: arch, params, FLOPs, top-1,
top-5 and measured inference throughput of the subnet.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import torch
from lightning.fabric import Fabric
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ovo.archspec import parse_arch_spec
from ovo.atomic import atomic_write_json, atomic_write_text
from ovo.commands.cli import hydra_command, output_dir, print_outputs
from ovo.commands.from_checkpoint import (
    compile_for_eval,
    compile_line,
    compile_settings,
    eval_fabric,
    open_checkpoint,
)
from ovo.data.splits import check_eval_split
from ovo.errors import ConfigError
from ovo.latency.timing import wall_seconds
from ovo.scoring import EvalSettings, SubnetEvaluator
from ovo.space import Arch
from ovo.supernet import SuperViT


@torch.inference_mode()
def inference_throughput(
    net: SuperViT, arch: Arch, fabric: Fabric, batch: int, repeats: int = 3
) -> float:
    """Images per second of ``net(x, arch)`` on random input (median of ``repeats``)."""
    cfg = net.cfg
    x = torch.randn(batch, cfg.in_chans, cfg.img_size, cfg.img_size, device=fabric.device)

    def forward() -> None:
        with fabric.autocast():
            net(x, arch)

    forward()  # warm-up
    times = sorted(wall_seconds(forward, fabric.device) for _ in range(repeats))
    return batch / times[len(times) // 2]


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    check_eval_split(cfg.split)
    if cfg.throughput_batch < 1:
        raise ConfigError(f"throughput_batch={cfg.throughput_batch} must be at least 1")
    eval_settings = EvalSettings.from_dict(cfg.eval)
    compile_settings(cfg)
    loaded = open_checkpoint(cfg)
    archs = parse_arch_spec(cfg.arch, loaded.space, cfg.seed)
    dm = loaded.datamodule(cfg.get("data"))
    fabric = eval_fabric(cfg)
    loader = dm.eval_dataloader(cfg.split)
    evaluator = SubnetEvaluator(
        loaded.net, loader, fabric, cache=eval_settings.cache, max_batches=eval_settings.max_batches
    )
    compiled = compile_for_eval(evaluator.net, cfg, fabric, dm.eval_batch_size)
    scores = evaluator.evaluate(list(archs.values()), progress=True)
    net = evaluator.net
    rows = [
        {
            "name": name,
            "arch": arch.short(),
            "params": net.num_params(arch),
            "macs": net.num_macs(arch),
            "acc1": 100 * score.acc1,
            "acc5": 100 * score.acc5,
            "images": score.num_images,
            "throughput_img_s": inference_throughput(net, arch, fabric, cfg.throughput_batch),
            "arch_config": arch.to_dict(),
        }
        for (name, arch), score in zip(archs.items(), scores)
    ]
    if fabric.global_rank == 0:
        out = output_dir()
        atomic_write_json(
            out / "evaluation.json",
            {"checkpoint": str(cfg.ckpt_path), "split": cfg.split, "rows": rows},
        )
        atomic_write_text(out / "evaluation.csv", _csv(rows))
        table = Table(
            title=f"{cfg.split} split, {scores[0].num_images} images, "
            f"{loaded.space.name} supernet (inherited weights)"
        )
        for col in ("name", "params (M)", "MACs (M)", "top-1 %", "top-5 %", "img/s"):
            table.add_column(col, justify="left" if col == "name" else "right")
        for r in rows:
            table.add_row(
                r["name"],
                f"{r['params'] / 1e6:.2f}",
                f"{r['macs'] / 1e6:.1f}",
                f"{r['acc1']:.2f}",
                f"{r['acc5']:.2f}",
                f"{r['throughput_img_s']:.0f}",
            )
        Console().print(table)
        print_outputs(
            "ovo evaluation finished",
            {"table": out / "evaluation.csv", "rows": out / "evaluation.json"},
            compile_line(compiled),
        )
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    fields = [k for k in rows[0] if k != "arch_config"]
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


main = hydra_command("evaluate", run)
