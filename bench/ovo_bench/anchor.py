"""The stock-model anchor: timm's own ``vit_tiny_patch16_224`` (``pretrained=False``), eager and
compiled, beside ovo's AutoFormer-T export and the supernet running AutoFormer-T, all timed
interleaved in one process on the fixture's batch (bf16 autocast on a GPU).

The supernet's ratios are against its own export; this row set says how fast that export is
against a model nobody wrote for this project, so a slow export cannot hide behind a good ratio.
The two shapes differ (vit_tiny: depth 12, MLP ratio 4; AutoFormer-T: depth 13, mixed ratios),
so each row also gives the achieved TFLOP/s (ovo's closed-form MACs, 3 x 2 x MACs per image for
fwd+bwd), which is comparable across the two.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from ovo.space import Arch

from .fixture import Fixture
from .report import Row
from .steps import fwd_bwd, static_zero
from .timing import first_call_s, interleaved_medians

TIMM_NAME = "vit_tiny_patch16_224"
TIMM_ARCH = Arch.uniform(192, 12, 3, 4.0)  # vit_tiny's shape in ovo's terms (head_dim 64)


def stock_vit(fx: Fixture) -> nn.Module:
    """timm's ``vit_tiny_patch16_224``, random init, at the fixture's image/patch/class sizes
    (224/16/1000 on the GPU setting: the model as registered)."""
    cfg = fx.cfg
    torch.manual_seed(0)
    model = timm.create_model(
        TIMM_NAME,
        pretrained=False,
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        num_classes=cfg.num_classes,
    )
    return model.to(fx.device).train()


def measure(fx: Fixture, args, peak_tflops: float | None) -> list[Row]:
    s, device, amp, x = fx.setting, fx.device, fx.amp, fx.x
    af = fx.archs["AutoFormer-T"]
    timm_eager = stock_vit(fx)
    timm_compiled = stock_vit(fx)
    # quick (the smoke tests): dynamo's wiring only, no code generation; dynamic=False: a
    # second setting in one process must not turn on automatic dynamic shapes (../shared/NOTES.md)
    backend = "eager" if args.quick else "inductor"
    compiled = torch.compile(timm_compiled, backend=backend, dynamic=False)
    export, net = fx.static(af), fx.supernet
    steps = {
        f"timm {TIMM_NAME}, eager": (
            fwd_bwd(timm_eager, x, amp, static_zero(timm_eager)),
            TIMM_ARCH,
        ),
        f"timm {TIMM_NAME}, compiled": (
            fwd_bwd(compiled, x, amp, static_zero(timm_compiled)),
            TIMM_ARCH,
        ),
        "ovo AutoFormer-T export, eager": (fwd_bwd(export, x, amp, static_zero(export)), af),
        "ovo supernet AutoFormer-T, eager": (
            fwd_bwd(lambda v: net(v, af), x, amp, fx.slice_grads.zero_),
            af,
        ),
    }
    warm_up_s = first_call_s(steps[f"timm {TIMM_NAME}, compiled"][0], device)
    seconds = interleaved_medians(
        [step for step, _ in steps.values()], device, args.repeats, args.warmup
    )
    fx.slice_grads.zero_()
    rows = [
        Row(
            f"anchor compile warm-up, timm {TIMM_NAME} (fwd+bwd)",
            s.name,
            warm_up_s,
            "",
            unit="s",
            detail={"backend": backend},
        )
    ]
    flops_s: dict[str, float] = {}
    for (label, (_, arch)), t in zip(steps.items(), seconds):
        macs = net.num_macs(arch)
        flops_s[label] = 3 * 2 * macs * s.batch / t
        detail = {"step_s": t, "gmacs_per_img": macs / 1e9, "tflop_s": flops_s[label] / 1e12}
        if peak_tflops:
            detail["mfu"] = flops_s[label] / (peak_tflops * 1e12)
        rows.append(Row(f"anchor fwd+bwd img/s, {label}", s.name, s.batch / t, "", "img/s", detail))
    eager = flops_s[f"timm {TIMM_NAME}, eager"]
    for label in ("ovo AutoFormer-T export, eager", "ovo supernet AutoFormer-T, eager"):
        rows.append(
            Row(
                f"anchor TFLOP/s, {label.removesuffix(', eager')} / timm eager",
                s.name,
                flops_s[label] / eager,
                "",
            )
        )
    return rows
