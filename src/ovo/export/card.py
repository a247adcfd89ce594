"""The model card (``README.md`` of an export folder, the Hub's format: YAML metadata + text).

Every number on the card comes from a file a command wrote or from a measurement the export
made itself, never typed: :func:`ovo.search.result.search_facts` reads a search's ``results.json``
(``search_result=PATH``), the export command a latency table (``latency_table=PATH``), and
the export's own evaluation (``eval_split=val|test|search``) is passed in as measured (the
latency facts are made by the export command, which reads the table). The
facts are also kept in ``config.json`` (key ``card``), so a reader can trace each number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ovo.space import Arch

DIST_NAME = "ovo-vit"  # the distribution name (the import name is `ovo`)
# Hub dataset ids of the datasets ovo's data modules read (by data module name)
HUB_DATASETS = {
    "cifar10": ("CIFAR-10", "uoft-cs/cifar10"),
    "cifar100": ("CIFAR-100", "uoft-cs/cifar100"),
    "imagenet": ("ImageNet-1k", "ILSVRC/imagenet-1k"),
}
CITATION = """@article{wei2022ovo,
  title   = {OVO: One-shot Vision Transformer Search with Online Distillation},
  author  = {Wei and Pan and Niu and Li},
  journal = {arXiv preprint arXiv:2212.13766},
  year    = {2022}
}"""


def _budget(constraints: Mapping[str, Any]) -> str:
    names = {
        "params_min": "params >=",
        "params_max": "params <=",
        "flops_min": "MACs >=",
        "flops_max": "MACs <=",
        "latency_ms_max": "latency (ms) <=",
    }
    parts = [f"{label} {constraints[k]:,}" for k, label in names.items() if constraints.get(k)]
    return ", ".join(parts) or "none"


def _conditions(c: Mapping[str, Any]) -> str:
    keys = ("runtime", "provider", "device", "threads", "dtype", "batch", "tokens")
    return ", ".join(f"{k} {c[k]}" for k in keys if c.get(k) is not None)


def render(
    name: str, config: Mapping[str, Any], folder_files: list[str], hub_id: str | None
) -> str:
    """The card's text for the export whose ``config.json`` is ``config``."""
    card, args, pre = config["card"], config["model_args"], config["pretrained_cfg"]
    arch = Arch.from_dict(config["arch"])
    acc, latency, search = card.get("accuracy"), card.get("latency"), card.get("search")
    dataset = card.get("dataset") or {}
    meta: dict[str, Any] = {
        "library_name": "timm",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "timm", "vision-transformer", "ovo", "nas"],
        "metrics": ["accuracy"],
    }
    if dataset.get("hub_id"):
        meta["datasets"] = [dataset["hub_id"]]
    if acc:
        meta["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-classification"},
                        "dataset": {
                            "name": dataset.get("name", "the training data"),
                            "type": dataset.get("hub_id") or dataset.get("name", "custom"),
                            "split": acc["split"],
                        },
                        "metrics": [
                            {"type": "accuracy", "name": "top-1 accuracy", "value": acc["acc1"]},
                            {"type": "accuracy", "name": "top-5 accuracy", "value": acc["acc5"]},
                        ],
                    }
                ],
            }
        ]
    where = f"hf-hub:{hub_id}" if hub_id else "local-dir:PATH/TO/THIS/FOLDER"
    side = args["img_size"][0] if isinstance(args["img_size"], list) else args["img_size"]
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).rstrip(),
        "---",
        f"# {name}: a Vision Transformer found by ovo",
        "",
        "A subnet of a weight-sharing ViT supernet trained with OVO (one-shot ViT search with "
        "online distillation)"
        + (", found by ovo's search," if search else "")
        + " exported with its inherited weights (not retrained) as a stock timm "
        "`VisionTransformer`.",
        "",
        "## Model details",
        f"- **Architecture:** embed dim {arch.embed_dim}, depth {arch.depth}, heads per layer "
        f"{list(arch.num_heads)}, MLP ratios per layer {list(arch.mlp_ratio)}, head dim "
        f"{args['head_dim']}, patch {args['patch_size']}, {side}x{side} input, "
        f"{args['global_pool']} pooling, {args['num_classes']} classes",
        f"- **Params:** {config['params'] / 1e6:.3f}M ({config['params']:,}); "
        f"**MACs:** {config['macs'] / 1e6:.2f}M per image",
        f"- **Supernet:** `{config['source_checkpoint']}` (space '{card.get('space')}')",
    ]
    if dataset.get("name"):
        lines.append(f"- **Data:** {dataset['name']}")
    if search:
        lines.append(
            f"- **Search:** {search['strategy']} over {search['num_evaluated']} archs, budget "
            f"{_budget(search['constraints'])}, fitness on the {search['fitness_split']}; "
            f"supernet `{search['checkpoint']}` (results: `{search['results']}`)"
        )
    if acc:
        lines.append(
            f"- **Accuracy (inherited weights):** top-1 {acc['acc1']:.2f}%, top-5 "
            f"{acc['acc5']:.2f}% on the **{acc['split']}** split (from {acc['source']})"
        )
    else:
        lines.append(
            "- **Accuracy:** not measured for this export (give search_result=... or eval_split=)"
        )
    if latency:
        measured = latency.get("measured_ms")
        lines.append(
            f"- **Latency:** {latency['predicted_ms']:.3g} ms predicted by the lookup table"
            + (f", {measured:.3g} ms measured" if measured is not None else "")
            + f" ({_conditions(latency['conditions'])}; from {latency['source']})"
        )
    lines.append(
        f"- **Preprocessing:** resize ({pre.get('interpolation')}) and center crop "
        f"(crop_pct {pre.get('crop_pct')}) to {side}px, mean {list(pre.get('mean', []))}, std "
        f"{list(pre.get('std', []))} (`timm.data.resolve_data_config` reads them)"
    )
    lines += [
        "",
        "## How to use",
        "",
        "### timm",
        "",
        "`import ovo` registers the `ovo_vit` architecture with timm's registry; timm alone "
        f"does not know it. Install: `pip install {DIST_NAME}` (import name `ovo`; from its git "
        f'repository until a release: `pip install "{DIST_NAME} @ git+<repository URL>"`).',
        "",
        "```python",
        "import ovo  # registers ovo_vit with timm",
        "import timm",
        "",
        f'model = timm.create_model("{where}", pretrained=True).eval()',
        "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))",
        "logits = model(transform(image).unsqueeze(0))  # image: a PIL image",
        "```",
    ]
    if "model.pt2" in folder_files:
        lines += [
            "",
            "### torch.export (torch alone, no ovo or timm)",
            "",
            "```python",
            "import torch",
            "",
            'model = torch.export.load("model.pt2").module()  # dynamic batch',
            "logits = model(images)  # images: float32 N x "
            f"{args['in_chans']} x {side} x {side}, preprocessed as above",
            "```",
        ]
    if "model.onnx" in folder_files:
        lines += [
            "",
            "### ONNX Runtime",
            "",
            "```python",
            "import onnxruntime as ort",
            "",
            'session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])',
            'logits = session.run(["logits"], {"images": images})[0]  # images: float32 numpy, '
            f"N x {args['in_chans']} x {side} x {side}, preprocessed as above",
            "```",
        ]
    lines += ["", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def front_matter(text: str) -> dict[str, Any]:
    """The YAML metadata block of a card."""
    _, block, _ = text.split("---\n", 2)
    return yaml.safe_load(block)
