"""``python -m ovo.export ckpt_path=... arch=best_arch.yaml``: a subnet as a stock timm model.

Writes ``model.safetensors`` + ``config.json`` (loadable with :func:`ovo.export.load_exported`,
no supernet code needed) and optionally ``model.onnx``; checks on a batch that the exported
model's logits equal the supernet's for that arch, and says so.
"""

from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from ovo.checkpoint import load_supernet
from ovo.cli import parse_arch_spec, user_errors_exit
from ovo.errors import ConfigError
from ovo.export.timm_vit import export_subnet, load_exported, save_exported
from ovo.paths import conf_dir

PARITY_TOL = 1e-5  # max |diff| relative to the logit scale (fp32)
ONNX_TOL = 1e-4


def export_onnx(model: torch.nn.Module, x: torch.Tensor, path: str) -> float | None:
    """Write ``model.onnx`` (dynamic batch); return max |onnx - torch| if onnxruntime exists."""
    torch.onnx.export(
        model,
        (x,),
        path,
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
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        return float((torch.from_numpy(got) - model(x)).abs().max())


def run_export(cfg: DictConfig) -> dict:
    loaded = load_supernet(cfg.ckpt_path)
    archs = parse_arch_spec(cfg.arch, loaded.space, cfg.seed)
    if len(archs) != 1:
        raise ConfigError(f"arch={cfg.arch} names {len(archs)} archs; export takes one")
    name, arch = next(iter(archs.items()))
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
        f"exported '{name}' ({report['params'] / 1e6:.2f}M params, "
        f"{report['macs'] / 1e6:.1f}M MACs) to {out}",
        f"  parity: timm model vs supernet logits, max |diff| = {diff:.2e} "
        f"(tolerance {PARITY_TOL * scale:.1e}) OK",
        f"  reload: model.safetensors + config.json -> same logits (max |diff| = "
        f"{reload_diff:.1e})",
    ]
    if cfg.onnx:
        onnx_diff = export_onnx(model, x, str(out / "model.onnx"))
        report["onnx_max_abs_diff"] = onnx_diff
        if onnx_diff is None:
            lines.append("  onnx:   model.onnx written (install onnxruntime to check it)")
        elif onnx_diff > ONNX_TOL:
            raise RuntimeError(f"ONNX logits differ by {onnx_diff:.3g} (> {ONNX_TOL})")
        else:
            lines.append(
                f"  onnx:   model.onnx, onnxruntime vs torch max |diff| = {onnx_diff:.1e} OK"
            )
    print("\n".join(lines), flush=True)
    return report


@hydra.main(config_path=str(conf_dir()), config_name="export", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    run_export(cfg)


if __name__ == "__main__":
    main()
