"""ovo's subnets in timm's model registry and its Hub folder format.

``import ovo`` registers the ``ovo_vit`` entrypoint (built with timm's ``build_model_with_cfg``),
so a folder written by :func:`save_hub_folder` (``config.json`` with ``architecture``,
``model_args`` and ``pretrained_cfg``, plus ``model.safetensors``: what timm's ``save_for_hf``
writes) loads with ``timm.create_model("local-dir:<folder>", pretrained=True)``, or
``"hf-hub:<repo>"`` once pushed. timm finds entrypoints only in its registry, and has no plugin
hook: ``import ovo`` must run before ``create_model`` (an ``ovo_vit`` that is not registered
fails with timm's ``RuntimeError: Unknown model (ovo_vit)``).

The model is a stock timm ``VisionTransformer`` with per-layer blocks (see
:func:`ovo.export.timm_vit.build_timm_vit`); ``model_args`` holds the arch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import timm
import torch
from huggingface_hub import HfApi
from huggingface_hub.utils import HFValidationError, get_token, validate_repo_id
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, save_for_hf
from timm.models.vision_transformer import VisionTransformer

from ovo.errors import CheckpointError, ConfigError
from ovo.export.timm_vit import build_timm_vit, exported_config
from ovo.space import Arch
from ovo.supernet.config import ViTConfig

if TYPE_CHECKING:  # only for the annotation: `import ovo` runs this module, and the checkpoint
    # module imports Lightning (seconds), which registering ovo_vit with timm does not need
    from ovo.checkpoint import LoadedSupernet

ARCHITECTURE = "ovo_vit"

# What timm's registry holds for `ovo_vit` when no config.json says otherwise (a model built by
# name, e.g. to train from scratch): ImageNet's input and statistics, no weights.
default_cfgs = generate_default_cfgs(
    {
        ARCHITECTURE: {
            "num_classes": 1000,
            "input_size": (3, 224, 224),
            "fixed_input_size": True,
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": IMAGENET_DEFAULT_MEAN,
            "std": IMAGENET_DEFAULT_STD,
            "first_conv": "patch_embed.proj",
            "classifier": "head",
        }
    }
)


def model_args(arch: Arch, cfg: ViTConfig, head_dim: int) -> dict[str, Any]:
    """``ovo_vit``'s keyword arguments for ``arch`` (timm's ``model_args`` in ``config.json``)."""
    return {
        "embed_dim": arch.embed_dim,
        "depth": arch.depth,
        "num_heads": list(arch.num_heads),
        "mlp_ratio": list(arch.mlp_ratio),
        "head_dim": head_dim,
        "patch_size": cfg.patch_size,
        "img_size": cfg.img_size,
        "in_chans": cfg.in_chans,
        "num_classes": cfg.num_classes,
        "global_pool": cfg.global_pool,
        "norm_eps": cfg.norm_eps,
    }


def _side(img_size: int | Sequence[int]) -> int:
    if isinstance(img_size, int):
        return img_size
    h, w = (int(s) for s in img_size)
    if h != w:
        raise ValueError(f"ovo_vit takes square images, got img_size={list(img_size)}")
    return h


def _build(
    *,
    embed_dim: int,
    num_heads: Sequence[int],
    mlp_ratio: Sequence[float],
    head_dim: int = 64,
    depth: int | None = None,
    img_size: int | Sequence[int] = 224,
    patch_size: int = 16,
    in_chans: int = 3,
    num_classes: int = 1000,
    global_pool: str = "token",
    norm_eps: float = 1e-6,
    drop_path_rate: float = 0.0,
) -> VisionTransformer:
    arch = Arch(int(embed_dim), tuple(num_heads), tuple(mlp_ratio))
    if depth is not None and depth != arch.depth:
        raise ValueError(f"depth={depth} but num_heads/mlp_ratio name {arch.depth} layers")
    cfg = ViTConfig(
        img_size=_side(img_size),
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=num_classes,
        global_pool=global_pool,  # type: ignore[arg-type]
        drop_path_rate=drop_path_rate,
        norm_eps=norm_eps,
    )
    # the supernet's stochastic depth: linear in the layer index over its deepest arch; here
    # linear over this arch's depth (timm's convention), only used when fine-tuning
    rates = [drop_path_rate * i / max(arch.depth - 1, 1) for i in range(arch.depth)]
    return build_timm_vit(arch, cfg, head_dim, rates)


@register_model
def ovo_vit(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A subnet exported by ovo: a timm ``VisionTransformer`` with per-layer heads and MLP ratios
    and a fixed attention head dim (``model_args``: see :func:`model_args`)."""
    model = build_model_with_cfg(_build, ARCHITECTURE, pretrained, **kwargs)
    if not pretrained:
        model.init_weights()  # timm's ViT init (build_timm_vit skips it: weights are loaded)
    return model


def data_config_of(loaded: LoadedSupernet) -> dict[str, Any] | None:
    """timm's data config (input size, mean/std, interpolation, crop) of the eval transform the
    checkpoint's data was scored with; ``None`` when the checkpoint records no data config."""
    try:
        dm = loaded.datamodule()
    except CheckpointError:
        return None
    aug = dm.aug
    if aug.crop_pct is not None:
        crop_pct = float(aug.crop_pct)
    else:  # ovo's eval transforms: timm's 0.875 for large images, no crop for small ones
        crop_pct = 1.0 if aug.small_image or dm.name == "fake" else 0.875
    return {
        "input_size": (dm.in_chans, dm.img_size, dm.img_size),
        "interpolation": "bicubic" if aug.interpolation == "random" else aug.interpolation,
        "mean": tuple(dm.mean),
        "std": tuple(dm.std),
        "crop_pct": crop_pct,
        "crop_mode": "center",
    }


def registered_model(
    model: VisionTransformer,
    arch: Arch,
    cfg: ViTConfig,
    head_dim: int,
    data_config: Mapping[str, Any] | None,
) -> VisionTransformer:
    """``model``'s weights in a model built by timm's factory (``create_model("ovo_vit")``), so
    it has the ``pretrained_cfg`` and recorded ``model_args`` timm's ``save_for_hf`` needs."""
    overlay = dict(data_config or {})
    overlay["num_classes"] = cfg.num_classes
    with torch.device("meta"):  # no init work: the weights are assigned below
        built = timm.create_model(
            ARCHITECTURE,
            pretrained=False,
            pretrained_cfg_overlay=overlay,
            **model_args(arch, cfg, head_dim),
        )
    built.load_state_dict(model.state_dict(), strict=True, assign=True)
    return built.eval()


def save_hub_folder(
    model: VisionTransformer,
    arch: Arch,
    cfg: ViTConfig,
    head_dim: int,
    out_dir: str | Path,
    data_config: Mapping[str, Any] | None,
    extra: Mapping[str, Any],
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` as timm's ``save_for_hf`` does
    (``safe_serialization=True``), ovo's keys (``extra``) beside timm's in ``config.json``.

    Written into a temporary folder first and moved in file by file (each move atomic), so a
    crash leaves no half-written file behind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timm_model = registered_model(model, arch, cfg, head_dim, data_config)
    tmp = Path(tempfile.mkdtemp(prefix=".ovo-export-", dir=out))
    try:
        save_for_hf(
            timm_model,
            str(tmp),
            model_config=dict(extra),
            model_args=model_args(arch, cfg, head_dim),
            safe_serialization=True,
            data_config=dict(data_config) if data_config else None,
        )
        # safetensors writes its file owner-only (0600); an export is meant to be shared: give
        # it the mode config.json got from open() under this process' umask
        os.chmod(tmp / "model.safetensors", (tmp / "config.json").stat().st_mode & 0o777)
        for name in ("model.safetensors", "config.json"):
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def save_exported(
    model: VisionTransformer,
    arch: Arch,
    cfg: ViTConfig,
    head_dim: int,
    out_dir: str | Path,
    data_config: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``out_dir`` (each atomically) in
    timm's Hub format; ``data_config`` (timm's: input size, mean/std, interpolation, crop) is
    the ``pretrained_cfg``'s preprocessing (timm's ImageNet defaults when ``None``)."""
    config = exported_config(arch, cfg, head_dim, **extra)
    return save_hub_folder(model, arch, cfg, head_dim, out_dir, data_config, config)


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid Hub repository id (``owner/name``), else a ConfigError."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ConfigError(f"push_to_hub={repo_id!r} is not a Hub repo id: {err}") from None
    if "/" not in repo_id:
        raise ConfigError(f"push_to_hub={repo_id!r}: give owner/name (e.g. your-user/{repo_id})")
    return repo_id


def check_hub_reachable(repo_id: str) -> None:
    """Fail (one ConfigError) before any work when the Hub cannot be reached or no token is
    set: nothing is written then."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ConfigError(
            f"push_to_hub={repo_id}: HF_HUB_OFFLINE is set; unset it to upload, or export without "
            "push_to_hub and upload the folder later (hf upload OWNER/NAME FOLDER)"
        )
    if get_token() is None:
        raise ConfigError(
            f"push_to_hub={repo_id}: no Hugging Face token (run `hf auth login` or set HF_TOKEN)"
        )
    try:
        HfApi().whoami()
    except Exception as err:  # offline, DNS, proxy, bad token: all say the same to the user
        first = " ".join(str(err).split())[:200]
        raise ConfigError(
            f"push_to_hub={repo_id}: cannot reach the Hugging Face Hub ({first}); export without "
            "push_to_hub and upload the folder later (hf upload OWNER/NAME FOLDER)"
        ) from None


def push_folder(folder: str | Path, repo_id: str, commit_message: str) -> str:
    """Upload ``folder`` to the Hub model repo ``repo_id`` (created if missing); its URL."""
    api = HfApi(library_name="timm")
    try:
        repo = api.create_repo(repo_id, exist_ok=True, repo_type="model")
        api.upload_folder(
            repo_id=repo.repo_id,
            folder_path=str(folder),
            commit_message=commit_message,
            allow_patterns=[
                "config.json",
                "model.safetensors",
                "README.md",
                "model.onnx",
                "model.pt2",
            ],
        )
    except Exception as err:  # the folder is complete: say how to upload it later
        first = " ".join(str(err).split())[:200]
        raise ConfigError(
            f"push_to_hub={repo_id}: the upload failed ({first}); the export is complete in "
            f"{folder}: upload it later with hf upload {repo_id} {folder}"
        ) from None
    return str(repo)
