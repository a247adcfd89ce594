"""``python -m ovo.evaluate ckpt_path=... arch=...``: score archs with inherited weights.

Prints and saves (``evaluation.json``, ``evaluation.csv``) a table: arch, params, FLOPs, top-1,
top-5 and measured inference throughput of the subnet.
"""

from __future__ import annotations

import csv
import time
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from ovo.checkpoint import load_supernet
from ovo.cli import datamodule_from_checkpoint, output_dir, parse_arch_spec, user_errors_exit
from ovo.errors import ConfigError
from ovo.evaluation import SubnetEvaluator, fabric_from_config
from ovo.paths import conf_dir
from ovo.search.state import atomic_write_json
from ovo.space import Arch
from ovo.supernet import SuperViT


@torch.inference_mode()
def inference_throughput(
    net: SuperViT, arch: Arch, fabric: Any, batch: int, repeats: int = 3
) -> float:
    """Images per second of ``net(x, arch)`` on random input (median of ``repeats``)."""
    cfg = net.cfg
    x = torch.randn(batch, cfg.in_chans, cfg.img_size, cfg.img_size, device=fabric.device)
    times = []
    for i in range(repeats + 1):
        if fabric.device.type == "cuda":
            torch.cuda.synchronize(fabric.device)
        start = time.perf_counter()
        with fabric.autocast():
            net(x, arch)
        if fabric.device.type == "cuda":
            torch.cuda.synchronize(fabric.device)
        if i:  # the first is warm-up
            times.append(time.perf_counter() - start)
    return batch / sorted(times)[len(times) // 2]


def run_evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    loaded = load_supernet(cfg.ckpt_path)
    archs = parse_arch_spec(cfg.arch, loaded.space, cfg.seed)
    fabric = fabric_from_config(cfg.eval)
    dm = datamodule_from_checkpoint(loaded.hparams, cfg.get("data"))
    if cfg.split not in ("val", "search"):
        raise ConfigError(f"split={cfg.split}: use val or search")
    loader = dm.val_dataloader() if cfg.split == "val" else dm.search_dataloader()
    evaluator = SubnetEvaluator(
        loaded.net, loader, fabric, cache=cfg.eval.cache, max_batches=cfg.eval.max_batches
    )
    scores = evaluator.evaluate(list(archs.values()), progress=True)
    net = evaluator.net
    rows = []
    for (name, arch), score in zip(archs.items(), scores):
        rows.append(
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
        )
    if fabric.global_rank == 0:
        out = output_dir()
        atomic_write_json(
            out / "evaluation.json",
            {"checkpoint": str(cfg.ckpt_path), "split": cfg.split, "rows": rows},
        )
        with (out / "evaluation.csv").open("w", newline="") as f:
            writer = csv.DictWriter(
                f, fieldnames=[k for k in rows[0] if k != "arch_config"], extrasaction="ignore"
            )
            writer.writeheader()
            writer.writerows(rows)
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
        print(f"saved {out / 'evaluation.json'} and {out / 'evaluation.csv'}", flush=True)
    return rows


@hydra.main(config_path=str(conf_dir()), config_name="evaluate", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    run_evaluate(cfg)


if __name__ == "__main__":
    main()
