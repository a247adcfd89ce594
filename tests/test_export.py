"""ovo.export's deployment outputs: timm's hub folder, model.pt2, model.onnx, the model card.

The commands run on the micro checkpoint of ``fixtures/pre_refactor_465a06b`` (seconds); the
direct checks use nano supernets at 32px with random weights.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ovo.checkpoint import load_supernet
from ovo.export import export_subnet, load_exported, save_exported
from ovo.export.card import front_matter
from ovo.space import Arch, load_space
from ovo.supernet import SuperViT, ViTConfig

from helpers import run_module

FIX = Path(__file__).parent / "fixtures"
CKPT = FIX / "pre_refactor_465a06b" / "last.ckpt"
RESULTS = FIX / "pre_refactor_465a06b" / "results_complete.json"
FORMAT1 = FIX / "export_format1"
DATA_CONFIG = {
    "input_size": (3, 32, 32),
    "interpolation": "bilinear",
    "mean": (0.25, 0.5, 0.75),
    "std": (0.2, 0.3, 0.4),
    "crop_pct": 0.9,
    "crop_mode": "center",
}


def _export(tmp_path: Path, *args: str) -> tuple[int, Path]:
    out = tmp_path / "model"
    code = run_module(
        "ovo.export",
        [f"ckpt_path={CKPT}", f"out_dir={out}", f"hydra.run.dir={tmp_path}/run", *args],
    )
    return code, out


@pytest.mark.parametrize("which", ["min", "max", "random"])
def test_timm_create_model_equals_load_exported_bit_for_bit(which, tmp_path):
    import timm

    torch.manual_seed(0)
    cfg = ViTConfig(img_size=32, patch_size=8, num_classes=10, global_pool="avg")
    net = SuperViT(load_space("nano"), cfg).eval()
    arch = {
        "min": net.space.min_arch,
        "max": net.space.max_arch,
        "random": net.space.sample(random.Random(7)),
    }[which]
    save_exported(export_subnet(net, arch), arch, cfg, 64, tmp_path, data_config=DATA_CONFIG)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "ovo_vit" and config["num_features"] == arch.embed_dim
    assert config["model_args"]["num_heads"] == list(arch.num_heads)
    assert Arch.from_dict(config["arch"]) == arch  # ovo's keys beside timm's
    model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    images = torch.randn(5, 3, 32, 32)  # generated images
    with torch.no_grad():
        assert torch.equal(model(images), load_exported(tmp_path)(images))
        assert torch.equal(model(images), net(images, arch))
    data = timm.data.resolve_data_config(model=model)
    assert data == {**DATA_CONFIG, "mean": [0.25, 0.5, 0.75], "std": [0.2, 0.3, 0.4]}
    assert timm.data.resolve_data_config(model=load_exported(tmp_path)) == data


def test_format1_exports_still_load():
    """``fixtures/export_format1`` was written by ovo.export before the hub format (its
    make.sh): the max arch of the micro checkpoint."""
    assert json.loads((FORMAT1 / "config.json").read_text())["format_version"] == 1
    net = load_supernet(CKPT).net
    old = load_exported(FORMAT1)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(old(images), export_subnet(net, net.space.max_arch).eval()(images))


FRESH = """
import json, sys
import torch

images, expected = torch.load(sys.argv[2]), torch.load(sys.argv[3])
report = {}
if sys.argv[4] == "pt2":
    model = torch.export.load(sys.argv[1] + "/model.pt2").module()
    got = model(images)
    report["batch1"] = float((model(images[:1]) - expected[:1]).abs().max())
else:
    import onnxruntime as ort

    path = sys.argv[1] + "/model.onnx"
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["logits"], {"images": images.numpy()})[0])
report["max_abs_diff"] = float((got - expected).abs().max())
report["same_top1"] = bool(torch.equal(got.argmax(-1), expected.argmax(-1)))
report["imported"] = sorted(m for m in ("ovo", "timm") if m in sys.modules)
if sys.argv[4] == "pt2":
    import timm

    try:
        timm.create_model("local-dir:" + sys.argv[1], pretrained=True)
        report["timm_alone"] = "loaded"
    except RuntimeError as err:
        report["timm_alone"] = str(err)
print(json.dumps(report))
"""


def _fresh_process(tmp_path: Path, out: Path, arch: Arch, fmt: str) -> dict:
    """Run ``out``'s ``model.<fmt>`` in a new interpreter that never imports ovo (torch alone, or
    onnxruntime alone) on 3 images; its logits against the supernet's."""
    net = load_supernet(CKPT).net
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = net(images, arch)
    torch.save(images, tmp_path / "images.pt")
    torch.save(expected, tmp_path / "expected.pt")
    script = tmp_path / "fresh.py"
    script.write_text(textwrap.dedent(FRESH))
    args = [str(out), str(tmp_path / "images.pt"), str(tmp_path / "expected.pt"), fmt]
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["imported"] == []  # neither ovo nor timm was needed
    return report


def test_export_pt2_and_card_from_a_search_result(tmp_path):
    """format=[pt2] with a search's results.json: the files, the card's numbers, and model.pt2
    loaded by torch alone in a fresh process."""
    results = json.loads(RESULTS.read_text())
    final = results["final"][2]
    arch = Arch.from_dict(final["arch"])
    arch.to_yaml(tmp_path / "arch.yaml")
    code, out = _export(
        tmp_path, f"arch={tmp_path / 'arch.yaml'}", "format=[pt2]", f"search_result={RESULTS}"
    )
    assert code == 0
    listing = sorted(p.name for p in out.iterdir())
    assert listing == ["README.md", "config.json", "model.pt2", "model.safetensors"]
    # every file readable as the user's umask says (safetensors alone would write 0600)
    (tmp_path / "plain").write_text("")
    mode = (tmp_path / "plain").stat().st_mode & 0o777
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == dict.fromkeys(listing, mode)

    # the card's numbers are those of results.json
    config = json.loads((out / "config.json").read_text())
    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "timm" and "timm" in meta["tags"]
    (result,) = meta["model-index"][0]["results"]
    assert result["dataset"]["split"] == results["final_split"] == "val"
    assert [m["value"] for m in result["metrics"]] == [final["val_acc1"], final["val_acc5"]]
    assert config["card"]["accuracy"]["acc1"] == final["val_acc1"]
    assert config["params"] == final["params"] and config["macs"] == final["flops"]
    assert f"top-1 {final['val_acc1']:.2f}%" in card and "**val** split" in card
    assert f"{RESULTS}, final[2], val split" in card  # where the number was read
    assert f"params <= {results['constraints']['params_max']:,}" in card
    assert results["checkpoint"] in card and f"{final['params']:,}" in card
    assert "torch.export.load" in card and "@article{wei2022ovo" in card
    # timm's preprocessing is the eval transform of the data the checkpoint records (fake data)
    pre = config["pretrained_cfg"]
    assert pre["mean"] == pre["std"] == [0.5, 0.5, 0.5] and pre["input_size"] == [3, 32, 32]
    assert (pre["crop_pct"], pre["interpolation"]) == (1.0, "bicubic")

    report = _fresh_process(tmp_path, out, arch, "pt2")
    assert report["max_abs_diff"] <= 1e-5 and report["batch1"] <= 1e-5 and report["same_top1"]
    # a plain timm user must `import ovo` first: timm has no plugin hook to find ovo_vit
    assert "Unknown model (ovo_vit)" in report["timm_alone"]


@pytest.mark.slow  # the dynamo ONNX export takes ~10-40 s on 2 shared cores
def test_export_onnx_loads_in_onnxruntime_alone(tmp_path):
    arch = Arch(24, (2, 1), (2.0, 1.0))
    arch.to_yaml(tmp_path / "arch.yaml")
    code, out = _export(tmp_path, f"arch={tmp_path / 'arch.yaml'}", "onnx=true", "format=[pt2]")
    assert code == 0
    listing = sorted(p.name for p in out.iterdir())
    assert listing == ["README.md", "config.json", "model.onnx", "model.pt2", "model.safetensors"]
    assert "onnxruntime" in (out / "README.md").read_text()
    report = _fresh_process(tmp_path, out, arch, "onnx")
    assert report["max_abs_diff"] <= 1e-4 and report["same_top1"]


def test_card_accuracy_from_the_exports_own_evaluation_equals_ovo_evaluate(tmp_path):
    code, out = _export(tmp_path, "arch=min", "eval_split=val", "card=true")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert (
        run_module(
            "ovo.evaluate",
            [f"ckpt_path={CKPT}", "arch=[min]", "split=val", f"hydra.run.dir={tmp_path}/ev"],
        )
        == 0
    )
    (row,) = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    accuracy = json.loads((out / "config.json").read_text())["card"]["accuracy"]
    assert (accuracy["acc1"], accuracy["acc5"], accuracy["images"]) == (
        row["acc1"],
        row["acc5"],
        row["images"],
    )
    metrics = front_matter((out / "README.md").read_text())["model-index"][0]["results"][0]
    assert metrics["dataset"]["split"] == "val"
    assert [m["value"] for m in metrics["metrics"]] == [row["acc1"], row["acc5"]]


def test_card_latency_is_the_tables_prediction(tmp_path):
    from ovo.latency import load_table

    table_run = [f"ckpt_path={CKPT}", "repeats=2", "rounds=1", "warmup=1", "verify=0"]
    assert run_module("ovo.latency", [*table_run, f"hydra.run.dir={tmp_path}/lat"]) == 0
    path = tmp_path / "lat" / "latency_table.json"
    code, out = _export(tmp_path, "arch=max", f"latency_table={path}")
    assert code == 0
    table = load_table(str(path))
    predicted = table.predict(load_supernet(CKPT).space.max_arch)
    assert json.loads((out / "config.json").read_text())["card"]["latency"]["predicted_ms"] == (
        predicted
    )
    card = (out / "README.md").read_text()
    assert f"{predicted:.3g} ms predicted by the lookup table" in card
    assert f"threads {table.conditions.threads}" in card and str(path) in card


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"
    }


BAD = {
    "unknown format": (["format=[safetensors,tflite]"], "format=tflite is not an export format"),
    "hub offline (HF_HUB_OFFLINE)": (["push_to_hub=me/model"], "HF_HUB_OFFLINE is set"),
    "hub unreachable": (["push_to_hub=me/model"], "cannot reach the Hugging Face Hub"),
    "hub repo id malformed": (["push_to_hub=not//valid"], "is not a Hub repo id"),
    "eval split unknown": (["eval_split=train"], "eval_split=train"),
    "search result missing": (["search_result=/nonexistent/results.json"], "does not exist"),
    "latency table missing": (["latency_table=/nonexistent/table.json"], "does not exist"),
    "arch not in the search result": ([f"search_result={RESULTS}", "arch=max"], "finalists"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_values_give_one_error_line_and_write_nothing(case, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    args, needle = BAD[case]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    if "HF_HUB_OFFLINE" in case:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # no Hub here: a closed local port stands for it (refused at once, as offline)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"an earlier export")
    before = _snapshot(tmp_path)
    code, _ = _export(tmp_path, *args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ovo: error:")]
    assert code == 2 and len(lines) == 1, err[-3000:]
    assert needle in lines[0] and "Traceback" not in err, lines[0]
    assert _snapshot(tmp_path) == before


def test_onnx_true_means_onnx_in_format(tmp_path):
    from omegaconf import OmegaConf

    from ovo.commands.export import check_settings

    base = {"verify_batch": 4, "format": ["safetensors"], "onnx": False}
    assert check_settings(OmegaConf.create(base))[0] == ["safetensors"]
    assert check_settings(OmegaConf.create({**base, "onnx": True}))[0] == ["safetensors", "onnx"]
    both = {**base, "format": ["onnx", "pt2"], "onnx": True}
    assert check_settings(OmegaConf.create(both))[0] == ["safetensors", "pt2", "onnx"]
