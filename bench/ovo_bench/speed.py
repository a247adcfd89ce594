"""Speed: training and inference throughput of the supernet against the same subnets as static
timm models, one OVO step against a static teacher step + student step, and search-time
evaluation against static inference."""

from __future__ import annotations

import random
from collections.abc import Collection

import torch

from . import SPEED_PARTS
from .fixture import Fixture
from .report import Row
from .steps import adamw, fwd_bwd, inference, ovo_step, static_pair_step, static_zero
from .timing import paired_median


def measure(
    fx: Fixture, args, peak_tflops: float | None, parts: Collection[str] = SPEED_PARTS
) -> list[Row]:
    """The rows of ``parts`` (all of them: the ``speed`` measure), in ``SPEED_PARTS`` order."""
    rows: list[Row] = []
    if "fwd_bwd" in parts:
        rows += fwd_bwd_rows(fx, args, peak_tflops)
    if "inference" in parts:
        rows += inference_rows(fx, args)
    if "ovo_step" in parts:
        rows.append(_ovo_step_row(fx, args))
    if "search" in parts:
        rows.append(_search_eval_row(fx, args))
    fx.slice_grads.zero_()
    return rows


def mfu(macs: int, batch: int, seconds: float, peak_tflops: float) -> float:
    """Model FLOP utilisation of a fwd+bwd step (3 x the forward's 2 x MACs per image)."""
    return 3 * 2 * macs * batch / seconds / (peak_tflops * 1e12)


def fwd_bwd_rows(fx: Fixture, args, peak_tflops: float | None) -> list[Row]:
    """Training fwd+bwd of each bench arch: the supernet against its static export."""
    s, device, net, amp, x = fx.setting, fx.device, fx.supernet, fx.amp, fx.x
    zero = fx.slice_grads.zero_
    rows = []
    for name, arch in fx.archs.items():
        static = fx.static(arch)
        ts, tt = paired_median(
            fwd_bwd(lambda v, a=arch: net(v, a), x, amp, zero),
            fwd_bwd(static, x, amp, static_zero(static)),
            device,
            args.repeats,
            args.warmup,
        )
        detail = {"supernet_img_s": s.batch / ts, "static_img_s": s.batch / tt}
        if peak_tflops:
            detail["supernet_mfu"] = mfu(net.num_macs(arch), s.batch, ts, peak_tflops)
            detail["static_mfu"] = mfu(net.num_macs(arch), s.batch, tt, peak_tflops)
        rows.append(
            Row(
                "fwd+bwd img/s, supernet / static",
                f"tiny-{name} {s.name}",
                tt / ts,
                ">= 0.95",
                detail=detail,
            )
        )
    zero()
    return rows


def inference_rows(fx: Fixture, args) -> list[Row]:
    """Inference of each bench arch: the supernet against its static export."""
    s, device, net, amp, x = fx.setting, fx.device, fx.supernet, fx.amp, fx.x
    rows = []
    for name, arch in fx.archs.items():
        static = fx.static(arch)
        ts, tt = paired_median(
            inference(lambda v, a=arch: net(v, a), x, amp),
            inference(static, x, amp),
            device,
            args.repeats,
            args.warmup,
        )
        rows.append(
            Row(
                "inference img/s, supernet / static",
                f"tiny-{name} {s.name}",
                tt / ts,
                ">= 0.97",
                detail={"supernet_img_s": s.batch / ts, "static_img_s": s.batch / tt},
            )
        )
    return rows


def _ovo_step_row(fx: Fixture, args) -> Row:
    """One OVO step against a static teacher step + a static student step."""
    ovo = ovo_step(fx, fx.supernet, fx.slice_grads.zero_, adamw(fx.supernet.parameters()))
    pair = static_pair_step(fx, fx.static(fx.teacher), fx.static(fx.student))
    to, tp = paired_median(ovo, pair, fx.device, args.repeats, args.warmup)
    return Row(
        "OVO step time / (static teacher + student step)",
        f"tiny {fx.setting.name}",
        to / tp,
        "<= 1.05",
        detail={
            "ovo_step_s": to,
            "static_pair_s": tp,
            "teacher": fx.teacher.short(),
            "student": fx.student.short(),
        },
    )


def _search_eval_row(fx: Fixture, args) -> Row:
    """Search-time evaluation: the evaluator over many archs (its cache filled, the search's
    steady state) against static inference of the same archs."""
    # here, not at the top: Lightning's import is seconds a run without this row need not pay
    from ovo.scoring import EvalSettings, SubnetEvaluator, make_fabric

    s, x, y, amp = fx.setting, fx.x, fx.y, fx.amp
    archs = [fx.space.sample(random.Random(i)) for i in range(2 if args.quick else 6)]
    statics = [fx.static(a).eval() for a in archs]
    fabric = make_fabric(EvalSettings(accelerator=fx.device.type, devices=1))
    loader = [(x.cpu(), y.cpu())] * (1 if args.quick else 3)
    evaluator = SubnetEvaluator(fx.supernet, loader, fabric, cache=True)
    evaluator.evaluate(archs)  # fills the cache

    def run_static() -> None:
        with torch.inference_mode(), amp():
            for _ in loader:
                for m in statics:
                    m(x)

    te, tst = paired_median(
        lambda: evaluator.evaluate(archs), run_static, fx.device, args.repeats, args.warmup
    )
    for model in (fx.supernet, *statics):  # the evaluator put them in eval mode
        model.train()
    return Row(
        "search eval arch*img/s / static inference",
        f"tiny {s.name}",
        tst / te,
        ">= 0.95",
        detail={"arch_img_s": len(archs) * len(loader) * s.batch / te},
    )
