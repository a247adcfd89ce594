"""Where the supernet's time goes: ``torch.profiler`` tables (self time) of fwd+bwd of the
supernet and of the same static model, to find where a ratio below target comes from."""

from __future__ import annotations

from .fixture import Fixture
from .steps import fwd_bwd, static_zero
from .timing import sync


def show(fx: Fixture, which: str, args) -> None:
    """Print the two tables for the arch ``which`` (min, mid or max)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    arch, net, device = fx.archs[which], fx.supernet, fx.device
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    static = fx.static(arch)
    # each with its gradients cleared as in training (the supernet's SliceGrads attached)
    runs = (
        ("supernet", lambda v: net(v, arch), fx.slice_grads.zero_),
        ("static timm", static, static_zero(static)),
    )
    for label, model, zero in runs:
        step = fwd_bwd(model, fx.x, fx.amp, zero)
        for _ in range(args.warmup):
            step()
        with torch_profile(activities=activities) as prof:
            for _ in range(args.repeats):
                step()
                sync(device)
        print(f"\n== {label}, tiny-{which} {fx.setting.name}, {args.repeats} fwd+bwd ==")
        print(prof.key_averages().table(sort_by=key, row_limit=14))
