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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from omegaconf import DictConfig

from ovo.archspec import parse_one_arch
from ovo.atomic import atomic_write_json, atomic_write_text
from ovo.checkpoint import LoadedSupernet
from ovo.commands.cli import hydra_command, print_outputs
from ovo.commands.from_checkpoint import eval_fabric, open_checkpoint
from ovo.data.splits import check_eval_split
from ovo.errors import ConfigError
from ovo.export import formats as fmt
from ovo.export.card import HUB_DATASETS, render
from ovo.export.elastic import Slice, write_elastic
from ovo.export.hub import (
    check_hub_reachable,
    check_repo_id,
    data_config_of,
    push_folder,
    save_exported,
)
from ovo.export.timm_vit import export_subnet, load_exported
from ovo.latency import load_table, measure_model_ms, same_machine
from ovo.scoring import SubnetEvaluator
from ovo.search.front import Front, FrontMember, read_front
from ovo.search.result import read_results, search_facts
from ovo.search.warm import weights_fingerprint
from ovo.space import Arch
from ovo.units import format_count, parse_count

FAMILY_FORMAT, FAMILY_VERSION = "ovo.export.family", 1
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
    if (cfg.get("family") or {}).get("dir"):
        return run_family(cfg, formats)
    loaded = open_checkpoint(cfg)
    name, arch = parse_one_arch(cfg.arch, loaded.space)
    search = search_facts(cfg.search_result, arch) if cfg.get("search_result") else None
    latency = (search or {}).pop("latency", None)  # the search's prediction for its best arch
    if cfg.get("latency_table"):
        latency = latency_facts(cfg.latency_table, arch, loaded)
    report, outputs, lines = export_arch(
        cfg, loaded, name, arch, Path(cfg.out_dir), formats, hub_id, search, latency
    )
    print_outputs("ovo export finished", outputs, lines)
    return report


def export_arch(
    cfg: DictConfig,
    loaded: LoadedSupernet,
    name: str,
    arch: Arch,
    out_dir: Path,
    formats: list[str],
    hub_id: str | None,
    search: dict[str, Any] | None,
    latency: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Path], list[str]]:
    """One arch exported into ``out_dir`` (the timm Hub folder, its formats, its card), every
    file checked against the supernet's logits: (report, outputs, summary lines)."""
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
        out_dir,
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
    return report, outputs, lines


# ---- a family: every front member, or the best within each budget --------------------------
BUDGET_COSTS = {"params": "params", "macs": "macs", "latency": "latency_ms"}


def parse_budget(text: str) -> dict[str, float]:
    """``params:5M``, ``latency:8`` (ms) or ``macs:1G+latency:8`` (all of them) as upper bounds
    by front member field."""
    bounds: dict[str, float] = {}
    for part in str(text).split("+"):
        cost, _, value = part.strip().partition(":")
        if cost not in BUDGET_COSTS or not value:
            raise ConfigError(
                f"family.budgets item {text!r}: write <cost>:<max> with cost one of "
                f"{', '.join(BUDGET_COSTS)} (e.g. params:5M, latency:8, macs:1G+latency:8)"
            )
        bounds[BUDGET_COSTS[cost]] = float(parse_count(value, f"family.budgets {cost}"))
    return bounds


def _span(members: list[FrontMember], field: str) -> str:
    values = [getattr(m, field) for m in members if getattr(m, field) is not None]
    if not values:
        return f"{field}: not recorded"
    return f"{field} {format_count(min(values))}-{format_count(max(values))}"


def choose_members(front: Front, budgets: list[str]) -> list[tuple[FrontMember, list[str]]]:
    """Every member of ``front`` (no budgets), or for each budget the most accurate member
    (search-split top-1; ties: the cheaper by the front's order) within it; a member chosen by
    several budgets is exported once."""
    members = list(front.members)
    if not budgets:
        return [(m, []) for m in members]
    chosen: dict[str, tuple[FrontMember, list[str]]] = {}
    for text in budgets:
        bounds = parse_budget(text)
        for field in bounds:
            if field == "latency_ms" and all(m.latency_ms is None for m in members):
                raise ConfigError(
                    f"family.budgets item {text!r}: this front has no latency (its search had "
                    "no latency table); budget params or macs, or search with one"
                )
        fits = [m for m in members if all((getattr(m, f) or 0) <= v for f, v in bounds.items())]
        if not fits:
            spans = "; ".join(_span(members, f) for f in bounds)
            raise ConfigError(
                f"family.budgets item {text!r}: no member of the front is within it (the "
                f"front's {len(members)} members span {spans})"
            )
        best = max(fits, key=lambda m: (m.acc, -members.index(m)))
        chosen.setdefault(best.name, (best, []))[1].append(text)
    return [chosen[m.name] for m in members if m.name in chosen]


def read_family_front(directory: Path) -> Front:
    """The front of the search in ``directory``, with one line for a directory without one."""
    if not (directory / "front.json").is_file():
        older = (directory / "results.json").is_file()
        raise ConfigError(
            f"family={directory} has no front.json"
            + (
                " (its results.json is from an ovo before fronts); search again into a new "
                "directory with this ovo (python -m ovo.search ckpt_path=... objectives=[acc,"
                "params] name=...) to get one"
                if older
                else ": pass the run directory of a search (outputs/search/<name>)"
            )
        )
    return read_front(directory)


def check_same_weights(directory: Path, loaded: LoadedSupernet) -> None:
    """Refuse a checkpoint whose weights are not those the search scored its front with."""
    facts = read_results(directory / "results.json").facts
    recorded = (facts.scored_with or {}).get("weights")
    if recorded and recorded != weights_fingerprint(loaded.net.state_dict()):
        raise ConfigError(
            f"ckpt_path holds other weights than the ones the search in {directory} scored its "
            f"front with (its checkpoint: {facts.checkpoint}); export with that checkpoint"
        )


def member_latency(front: Front, member: FrontMember, loaded: LoadedSupernet) -> dict | None:
    """The member's predicted latency, and its whole-model latency measured here when this is
    the machine (and runtime) the search's table was built on."""
    if member.latency_ms is None:
        return None
    path = (front.latency_table or {}).get("path")
    measured = None
    table = load_table(str(path)) if path and Path(path).is_file() else None
    if table is not None and same_machine(table):
        model = export_subnet(loaded.net, member.arch).eval()
        measured = measure_model_ms(model, loaded.cfg, table.conditions.measuring())
    return {
        "predicted_ms": member.latency_ms,
        "measured_ms": measured,
        "conditions": {} if table is None else table.conditions.where(),
        "source": f"{path or 'the search'}, front member {member.name}",
    }


def run_family(cfg: DictConfig, formats: list[str]) -> dict[str, Any]:
    """``family=<search dir>``: a folder per chosen front member, ``family.json`` and a card
    listing them; with ``elastic=true`` also ``elastic/`` (the supernet once + slices.csv)."""
    directory = Path(str(cfg.family.dir))
    front = read_family_front(directory)
    budgets = [str(b) for b in (cfg.family.get("budgets") or [])]
    chosen = choose_members(front, budgets)  # budgets checked before the checkpoint loads
    loaded = open_checkpoint(cfg)
    check_same_weights(directory, loaded)
    root = Path(cfg.out_dir)
    results = directory / "results.json"
    members, lines, outputs = [], [], {}
    for member, for_budgets in chosen:
        search = search_facts(results, member.arch)
        search.pop("latency", None)
        latency = member_latency(front, member, loaded)
        report, _, member_lines = export_arch(
            cfg,
            loaded,
            member.name,
            member.arch,
            root / member.name,
            formats,
            None,
            search,
            latency,
        )
        lines.append(member_lines[0])
        outputs[member.name] = root / member.name
        members.append(
            {
                "name": member.name,
                "folder": member.name,
                "arch": member.arch.to_dict(),
                "params": member.params,
                "macs": member.macs,
                "latency_ms_predicted": member.latency_ms,
                "latency_ms_measured": (latency or {}).get("measured_ms"),
                "acc_search": member.acc,
                "final_split": front.final_split,
                "final_acc1": member.final_acc1,
                "final_acc5": member.final_acc5,
                "budgets": for_budgets,
                "files": sorted(p.name for p in (root / member.name).iterdir()),
            }
        )
        if latency and latency["measured_ms"] is not None:
            lines.append(
                f"  latency: {latency['predicted_ms']:.3g} ms predicted, "
                f"{latency['measured_ms']:.3g} ms measured here"
            )
    index = {
        "format": FAMILY_FORMAT,
        "version": FAMILY_VERSION,
        "search": str(directory),
        "checkpoint": str(cfg.ckpt_path),
        "objectives": list(front.objectives),
        "budgets": budgets,
        "elastic": None,
        "members": members,
    }
    if cfg.get("elastic"):
        slices = [
            Slice(
                m.name,
                m.arch,
                {
                    "params": m.params,
                    "macs": m.macs,
                    "latency_ms": m.latency_ms,
                    "acc": m.acc,
                    "final_split": front.final_split,
                    "final_acc1": m.final_acc1,
                    "final_acc5": m.final_acc5,
                },
            )
            for m, _ in chosen
        ]
        elastic = write_elastic(root / "elastic", loaded.net, slices, data_config_of(loaded))
        index["elastic"] = "elastic"
        outputs["elastic"] = elastic
        lines.append(f"elastic: the supernet once + slices.csv ({len(slices)} slices) in {elastic}")
    atomic_write_json(root / "family.json", index)
    atomic_write_text(root / "README.md", family_card(index, front))
    outputs |= {"index": root / "family.json", "card": root / "README.md"}
    print_outputs(f"ovo export finished: a family of {len(members)}", outputs, lines)
    return index


def family_card(index: Mapping[str, Any], front: Front) -> str:
    """The family's card: what it is, and one row per member (costs, accuracies, its folder)."""
    split = front.final_split or "final"
    rows = [
        "| member | params | MACs | latency (ms, predicted / measured) | search top-1 | "
        f"{split} top-1 | folder |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in index["members"]:
        lat = "-" if m["latency_ms_predicted"] is None else f"{m['latency_ms_predicted']:.3g}"
        if m["latency_ms_measured"] is not None:
            lat += f" / {m['latency_ms_measured']:.3g}"
        final = "-" if m["final_acc1"] is None else f"{m['final_acc1']:.2f}%"
        rows.append(
            f"| {m['name']} | {format_count(m['params'])} | {format_count(m['macs'])} | {lat} | "
            f"{m['acc_search']:.2f}% | {final} | [{m['folder']}]({m['folder']}/README.md) |"
        )
    elastic = (
        "\nThe supernet's weights are also in `elastic/` once, with `slices.csv` naming these "
        'members: `ovo.export.load_slice("elastic", "<member>")` returns one as the same '
        "timm model.\n"
        if index.get("elastic")
        else ""
    )
    return (
        f"# A family of {len(index['members'])} subnets found by ovo\n\n"
        f"The front of the search in `{index['search']}` (objectives "
        f"{', '.join(index['objectives'])}"
        + (f"; budgets {', '.join(index['budgets'])}" if index["budgets"] else "")
        + "), each member exported with its inherited weights as a stock timm "
        "`VisionTransformer` in its own folder (its own card there).\n\n"
        + "\n".join(rows)
        + "\n"
        + elastic
    )


main = hydra_command("export", run)
