"""``python -m ovo.latency space=tiny``: a latency lookup table of the space's building blocks
on this device (see :mod:`ovo.latency`).

Writes ``latency_table.json`` (keyed by runtime and provider, device, threads, dtype, batch,
tokens, torch version, space and model settings) and, with ``verify`` > 0, measures that many
random exported subnets whole in the same runtime and prints the table's prediction error
against them. ``runtime=onnxruntime`` times every part exported to ONNX in ONNX Runtime
(:mod:`ovo.latency.runtime`).
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import torch
from omegaconf import DictConfig
from rich.progress import track

from ovo.atomic import atomic_write_json
from ovo.checkpoint import load_supernet
from ovo.commands.cli import hydra_command, output_dir, print_outputs
from ovo.errors import ConfigError
from ovo.export import export_subnet
from ovo.latency import DTYPES, Conditions, measure_models_ms, measure_table
from ovo.latency.calibration import CALIBRATION_THRESHOLD
from ovo.latency.runtime import resolve_runtime
from ovo.settings import plain
from ovo.space import SearchSpace
from ovo.supernet import SuperViT, ViTConfig


def target_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name}: not a torch device (cpu, cuda, cuda:1...)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={name}: this machine has no CUDA GPU; measure on the device you deploy to"
        )
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name}: use cpu or cuda")
    return device


def run(cfg: DictConfig) -> dict[str, Any]:
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype={cfg.dtype}: use one of {', '.join(DTYPES)}")
    for key in ("batch_size", "repeats", "rounds"):
        if cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]} must be at least 1")
    if cfg.warmup < 0 or cfg.verify < 0 or cfg.calibrate < 0:
        raise ConfigError("warmup, verify and calibrate must be >= 0")
    device = target_device(str(cfg.device))
    runtime, provider = resolve_runtime(
        cfg.get("runtime") or "torch", cfg.get("provider"), device, DTYPES[cfg.dtype]
    )
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise ConfigError(f"threads={cfg.threads} must be at least 1")
        torch.set_num_threads(int(cfg.threads))
    if cfg.ckpt_path:
        loaded = load_supernet(cfg.ckpt_path)
        space, vit = loaded.space, loaded.cfg
        print(f"space '{space.name}' and model settings from {cfg.ckpt_path}", flush=True)
    else:
        space = SearchSpace.from_dict(plain(cfg.space))
        vit = ViTConfig.from_dict(plain(cfg.model) | {"drop_path_rate": 0.0})
    cond = Conditions(
        device,
        DTYPES[cfg.dtype],
        int(cfg.batch_size),
        int(cfg.repeats),
        int(cfg.warmup),
        int(cfg.rounds),
        runtime,
        provider,
        None if cfg.threads is None else int(cfg.threads),
    )

    what = "torch eager" if runtime == "torch" else f"exported, in {runtime}"

    table = measure_table(
        space,
        vit,
        space.head_dim,
        cond,
        progress=lambda it: track(it, description=f"timing block shapes ({what})", transient=True),
        calibrate=int(cfg.calibrate),
    )
    out = output_dir()
    path = out / "latency_table.json"
    report: dict[str, Any] = {"table": str(path), "conditions": table.conditions.to_dict()}
    lines = [
        f"{len(table.block_ms)} block shapes, {len(table.stem_ms)} embed dims: {table.describe()}",
        # the span a budget (constraints.latency_ms_max) can be chosen in
        f"predicted: {table.fastest(space):.3g} ms (fastest arch) to "
        f"{table.predict(space.max_arch):.3g} ms (max arch)",
    ]
    c = table.calibration
    if c is not None and c.sum_of_parts_miss is not None:
        lines.append(
            f"calibration on {len(c.archs)} whole subnets: the sum of parts misses them by "
            f"{100 * c.sum_of_parts_miss:.1f}% on average; line measured = {c.scale:.3f} x "
            f"sum {c.offset_ms:+.3g} ms ({'used' if c.applied else 'not used'}: above "
            f"{100 * CALIBRATION_THRESHOLD:.0f}% only)"
        )
    if cfg.verify:
        torch.manual_seed(cfg.seed)
        net = SuperViT(space, vit)
        rng = random.Random(f"ovo-latency/{cfg.seed}")
        archs = [space.sample(rng) for _ in range(int(cfg.verify))]
        builds = [lambda a=arch: export_subnet(net, a) for arch in archs]
        rows = []
        for arch, measured in zip(archs, measure_models_ms(builds, vit, cond)):
            predicted = table.predict(arch)
            rows.append(
                {
                    "arch": arch.to_dict(),
                    "predicted_ms": predicted,
                    "measured_ms": measured,
                    "error": predicted / measured - 1,
                }
            )
        report["verify"] = {"subnets": rows, **error_summary([r["error"] for r in rows])}
        v = report["verify"]
        lines.append(
            f"prediction error on {len(rows)} random exported subnets ({what}): mean "
            f"{100 * v['mean_abs_error']:.1f}%, median {100 * v['median_abs_error']:.1f}%, max "
            f"{100 * v['max_abs_error']:.1f}%; {v['within_10pct']} of {len(rows)} within 10%"
        )
    atomic_write_json(path, table.to_dict() | {"verify": report.get("verify")})
    print_outputs("ovo latency table written", {"table": path}, lines)
    return report


def error_summary(errors: list[float]) -> dict[str, Any]:
    """Mean, median and max absolute relative error, and how many are within 10%."""
    absolute = [abs(e) for e in errors]
    return {
        "mean_abs_error": statistics.fmean(absolute),
        "median_abs_error": statistics.median(absolute),
        "max_abs_error": max(absolute),
        "within_10pct": sum(a <= 0.10 for a in absolute),
    }


main = hydra_command("latency", run)
