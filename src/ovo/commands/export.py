"""``python -m ovo.export ckpt_path=... arch=best_arch.yaml``: a subnet as a stock timm model.

Writes timm's Hub folder (``config.json`` + ``model.safetensors``: loads with
``timm.create_model("local-dir:<folder>", pretrained=True)`` after ``import ovo``, or with
:func:`ovo.export.load_exported`), a model card (``README.md``), and with ``format=[...]``
``model.pt2`` (``torch.export``) and ``model.onnx`` (the dynamo ONNX exporter). Checks on a
batch that the exported model's logits equal the supernet's, that the saved folder gives the
same logits through both loaders, and that each deployment file matches the timm model; says so.
``push_to_hub=owner/name`` uploads the folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import timm
import torch
from omegaconf import DictConfig

from ovo.archspec import parse_one_arch
from ovo.atomic import atomic_write_text
from ovo.checkpoint import LoadedSupernet
from ovo.commands.cli import hydra_command, print_outputs
from ovo.commands.from_checkpoint import eval_fabric, open_checkpoint
from ovo.data.splits import check_eval_split
from ovo.errors import ConfigError
from ovo.export import formats as fmt
from ovo.export.card import HUB_DATASETS, render
from ovo.export.hub import (
    check_hub_reachable,
    check_repo_id,
    data_config_of,
    push_folder,
    save_exported,
)
from ovo.export.timm_vit import export_subnet, load_exported
from ovo.latency import load_table
from ovo.scoring import SubnetEvaluator
from ovo.search.result import search_facts
from ovo.space import Arch

PARITY_TOL = 1e-5  # max |diff| relative to the logit scale (fp32)


def check_settings(cfg: DictConfig) -> tuple[list[str], str | None]:
    """(formats, hub repo id) of the command line, every value checked before any work."""
    if cfg.verify_batch < 1:
        raise ConfigError(f"verify_batch={cfg.verify_batch} must be at least 1")
    raw = cfg.get("format") or []
    formats = fmt.check_formats([raw] if isinstance(raw, str) else list(raw), bool(cfg.onnx))
    split = cfg.get("eval_split")
    if split is not None:
        check_eval_split(split, "eval_split")
    for key in ("search_result", "latency_table"):
        if cfg.get(key) and not Path(cfg[key]).is_file():
            raise ConfigError(f"{key}={cfg[key]} does not exist")
    hub_id = check_repo_id(str(cfg.push_to_hub)) if cfg.get("push_to_hub") else None
    if hub_id:
        check_hub_reachable(hub_id)
    return formats, hub_id


def dataset_facts(loaded: LoadedSupernet) -> dict[str, Any] | None:
    data = (loaded.hparams or {}).get("data") or {}
    target = str(data.get("_target_", ""))
    key = target.rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    if key == "imagefolder" and data.get("root"):
        key = Path(str(data["root"])).name.lower()
    if key in HUB_DATASETS:
        name, hub_id = HUB_DATASETS[key]
        return {"name": name, "hub_id": hub_id}
    return {"name": key, "hub_id": None} if key else None


def evaluate_arch(cfg: DictConfig, loaded: LoadedSupernet, arch: Arch) -> dict[str, Any]:
    """Top-1/top-5 of ``arch`` (inherited weights) on ``cfg.eval_split``, as ovo.evaluate scores."""
    split = cfg.eval_split
    dm = loaded.datamodule(cfg.get("data"))
    score = SubnetEvaluator(loaded.net, dm.eval_dataloader(split), eval_fabric(cfg), cache=False)
    (result,) = score.evaluate([arch])
    return {
        "split": split,
        "acc1": result.acc1 * 100,
        "acc5": result.acc5 * 100,
        "images": result.num_images,
        "source": f"ovo.export's own evaluation, {result.num_images} images",
    }


def latency_facts(path: str | Path, arch: Arch, loaded: LoadedSupernet) -> dict[str, Any]:
    """``arch``'s latency predicted by the table at ``path`` (from ``python -m ovo.latency``),
    which must be a table of ``loaded``'s space and model settings."""
    table = load_table(str(path))
    table.check_matches(loaded.space, loaded.cfg, loaded.space.head_dim)
    return {
        "predicted_ms": table.predict(arch),
        "measured_ms": None,
        "conditions": table.conditions.where(),
        "source": str(path),
    }


def run(cfg: DictConfig) -> dict:
    formats, hub_id = check_settings(cfg)
    loaded = open_checkpoint(cfg)
    name, arch = parse_one_arch(cfg.arch, loaded.space)
    search = search_facts(cfg.search_result, arch) if cfg.get("search_result") else None
    latency = (search or {}).pop("latency", None)  # the search's prediction for its best arch
    if cfg.get("latency_table"):
        latency = latency_facts(cfg.latency_table, arch, loaded)
    net, vit = loaded.net, loaded.cfg
    model = export_subnet(net, arch).eval()
    x = torch.randn(
        cfg.verify_batch,
        vit.in_chans,
        vit.img_size,
        vit.img_size,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    with torch.no_grad():
        expected = net(x, arch)
        logits = model(x)
    diff = float((logits - expected).abs().max())
    scale = max(float(expected.abs().max()), 1.0)
    if diff > PARITY_TOL * scale:
        raise RuntimeError(
            f"exported logits differ from the supernet's by {diff:.3g} (> "
            f"{PARITY_TOL * scale:.3g}): this is a bug in ovo, please report it"
        )
    # the export's own evaluation, when asked for, wins over the search's numbers
    searched = search.pop("accuracy") if search else None
    accuracy = evaluate_arch(cfg, loaded, arch) if cfg.get("eval_split") else searched
    card = {
        "space": loaded.space.name,
        "dataset": dataset_facts(loaded),
        "accuracy": accuracy,
        "search": search,
        "latency": latency,
    }
    params, macs = net.num_params(arch), net.num_macs(arch)
    out = save_exported(
        model,
        arch,
        vit,
        loaded.space.head_dim,
        cfg.out_dir,
        data_config=data_config_of(loaded),
        source_checkpoint=str(cfg.ckpt_path),
        params=params,
        macs=macs,
        card=card,
    )
    timm_log = logging.getLogger("timm")
    level = timm_log.level
    timm_log.setLevel(logging.WARNING)  # not its "Loaded ... from checkpoint" line
    try:  # the saved files alone give the same logits, through both loaders
        with torch.no_grad():
            reload_diff = float((load_exported(out)(x) - logits).abs().max())
            timm_model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
            timm_same = torch.equal(timm_model(x), logits)
    finally:
        timm_log.setLevel(level)
    if not timm_same:
        raise RuntimeError("timm.create_model('local-dir:...') gives other logits: a bug in ovo")
    report: dict[str, Any] = {
        "arch": name,
        "out_dir": str(out),
        "params": params,
        "macs": macs,
        "parity_max_abs_diff": diff,
        "reload_max_abs_diff": reload_diff,
        "formats": formats,
    }
    lines = [
        f"'{name}': {params / 1e6:.2f}M params, {macs / 1e6:.1f}M MACs",
        f"parity: timm model vs supernet logits, max |diff| = {diff:.2e} "
        f"(tolerance {PARITY_TOL * scale:.1e}) OK",
        f"reload: load_exported -> same logits (max |diff| = {reload_diff:.1e}); "
        f'timm.create_model("local-dir:...") -> identical logits',
    ]
    outputs: dict[str, Path] = {"model": out}
    if "pt2" in formats or "onnx" in formats:
        program = fmt.export_program(timm_model, x)
        checks = []
        if "pt2" in formats:
            fmt.write_pt2(program, out / "model.pt2")
            checks.append(fmt.check_pt2(out / "model.pt2", x, logits))
        if "onnx" in formats:
            fmt.write_onnx(program, x, out / "model.onnx")
            checks.append(fmt.check_onnx(out / "model.onnx", x, logits))
        for check in checks:
            outputs[check.fmt] = check.path
            report[f"{check.fmt}_check"] = check.to_dict()
            lines.append(check.line())
        if "onnx" in formats:  # the key `onnx=true` reported before the format list existed
            report["onnx_max_abs_diff"] = report["onnx_check"]["max_abs_diff"]
    if cfg.get("card", True):
        config = json.loads((out / "config.json").read_text())
        files = sorted(p.name for p in out.iterdir())
        atomic_write_text(out / "README.md", render(name, config, files, hub_id))
        outputs["card"] = out / "README.md"
    if hub_id:
        url = push_folder(out, hub_id, f"ovo export of '{name}' ({arch.short()})")
        lines.append(f'hub: uploaded to {url} (timm.create_model("hf-hub:{hub_id}"))')
        report["hub_url"] = url
    print_outputs("ovo export finished", outputs, lines)
    return report


main = hydra_command("export", run)
