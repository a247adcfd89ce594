"""``python -m ovo.export ckpt_path=... arch=best_arch.yaml``: a subnet as a stock timm model.

Writes ``model.safetensors`` + ``config.json`` (loadable with :func:`ovo.export.load_exported`,
no supernet code needed) and optionally ``model.onnx``; checks on a batch that the exported
model's logits equal the supernet's for that arch, and says so.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from ovo.archspec import parse_one_arch
from ovo.atomic import atomic_path
from ovo.commands.base import hydra_command, open_checkpoint, print_outputs
from ovo.errors import ConfigError
from ovo.export.timm_vit import export_subnet, load_exported, save_exported

PARITY_TOL = 1e-5  # max |diff| relative to the logit scale (fp32)
ONNX_TOL = 1e-4


def export_onnx(model: torch.nn.Module, x: torch.Tensor, path: Path) -> float | None:
    """Write ``model.onnx`` (dynamic batch); return max |onnx - torch| if onnxruntime exists."""
    with atomic_path(path) as tmp:
        torch.onnx.export(
            model,
            (x,),
            str(tmp),
            dynamo=False,
            input_names=["images"],
            output_names=["logits"],
            opset_version=17,
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        )
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        return float((torch.from_numpy(got) - model(x)).abs().max())


def run(cfg: DictConfig) -> dict:
    if cfg.verify_batch < 1:
        raise ConfigError(f"verify_batch={cfg.verify_batch} must be at least 1")
    if cfg.onnx:
        try:
            import onnx  # noqa: F401  (torch.onnx.export needs it)
        except ImportError as err:
            raise ConfigError(
                "onnx=true needs the onnx package: uv sync --extra onnx (or pip install onnx)"
            ) from err
    loaded = open_checkpoint(cfg)
    name, arch = parse_one_arch(cfg.arch, loaded.space)
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
        diff = float((model(x) - expected).abs().max())
    scale = max(float(expected.abs().max()), 1.0)
    if diff > PARITY_TOL * scale:
        raise RuntimeError(
            f"exported logits differ from the supernet's by {diff:.3g} (> "
            f"{PARITY_TOL * scale:.3g}): this is a bug in ovo, please report it"
        )
    out = save_exported(
        model,
        arch,
        vit,
        loaded.space.head_dim,
        cfg.out_dir,
        source_checkpoint=str(cfg.ckpt_path),
        params=net.num_params(arch),
        macs=net.num_macs(arch),
    )
    with torch.no_grad():  # the saved files alone give the same logits
        reload_diff = float((load_exported(out)(x) - model(x)).abs().max())
    report = {
        "arch": name,
        "out_dir": str(out),
        "params": net.num_params(arch),
        "macs": net.num_macs(arch),
        "parity_max_abs_diff": diff,
        "reload_max_abs_diff": reload_diff,
    }
    lines = [
        f"'{name}': {report['params'] / 1e6:.2f}M params, {report['macs'] / 1e6:.1f}M MACs",
        f"parity: timm model vs supernet logits, max |diff| = {diff:.2e} "
        f"(tolerance {PARITY_TOL * scale:.1e}) OK",
        f"reload: model.safetensors + config.json -> same logits (max |diff| = {reload_diff:.1e})",
    ]
    outputs = {"model": out}
    if cfg.onnx:
        onnx_diff = export_onnx(model, x, out / "model.onnx")
        report["onnx_max_abs_diff"] = onnx_diff
        outputs["onnx"] = out / "model.onnx"
        if onnx_diff is None:
            lines.append("onnx:   model.onnx written (install onnxruntime to check it)")
        elif onnx_diff > ONNX_TOL:
            raise RuntimeError(f"ONNX logits differ by {onnx_diff:.3g} (> {ONNX_TOL})")
        else:
            lines.append(f"onnx:   onnxruntime vs torch max |diff| = {onnx_diff:.1e} OK")
    print_outputs("ovo export finished", outputs, lines)
    return report


main = hydra_command("export", run)
