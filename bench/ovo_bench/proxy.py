"""Where a sliced step's extra work is: a CPU-measurable, deterministic proxy of the slicing
tax. Extra kernel-launching ops and extra MB allocated per OVO training step (teacher + student,
gradients cleared, AdamW not included), supernet minus the two static models, before
(autograd's slice backward) and after (slice gradients written in place)."""

from __future__ import annotations

from collections.abc import Callable

from .fixture import Fixture
from .report import Row
from .steps import ovo_step, static_zero

# ops that launch no kernel (views, metadata, allocation) or are counted as their copy
VIEWS = {
    "aten::view",
    "aten::slice",
    "aten::as_strided",
    "aten::t",
    "aten::transpose",
    "aten::permute",
    "aten::expand",
    "aten::unbind",
    "aten::select",
    "aten::reshape",
    "aten::_unsafe_view",
    "aten::unsqueeze",
    "aten::squeeze",
    "aten::detach",
    "aten::alias",
    "aten::lift_fresh",
    "aten::empty",
    "aten::empty_strided",
    "aten::resolve_conj",
    "aten::resolve_neg",
    "aten::contiguous",  # counted where it copies, as aten::clone / aten::copy_
    "aten::to",
    "aten::_to_copy",  # counted as its aten::copy_
    "aten::empty_like",
    "aten::result_type",
}


def measure(fx: Fixture) -> list[Row]:
    """The CPU fixture's rows. Both sides run the same step (``step_losses``, one backward), so
    the difference is the supernet's own work."""
    t_model, s_model = fx.static(fx.teacher), fx.static(fx.student)
    static = {fx.teacher: t_model, fx.student: s_model}
    static_ops, static_mb = _profile_counts(
        ovo_step(fx, lambda v, a: static[a](v), static_zero(t_model, s_model))
    )
    before = fx.new_supernet()  # no SliceGrads attached: autograd's own slice backward
    steps = {
        "before: autograd slices": ovo_step(fx, before, lambda: before.zero_grad(set_to_none=True)),
        "after: in place": ovo_step(fx, fx.supernet, fx.slice_grads.zero_),
    }
    rows = []
    for label, step in steps.items():
        ops, mb = _profile_counts(step)
        detail = {"supernet_ops": ops, "static_ops": static_ops}
        detail |= {"supernet_mb": mb, "static_mb": static_mb}
        setting = f"tiny {fx.setting.name}"
        rows.append(
            Row(f"extra ops / step, {label}", setting, float(ops - static_ops), "", "ops", detail)
        )
        rows.append(
            Row(f"extra MB allocated / step, {label}", setting, mb - static_mb, "", "MB", detail)
        )
    return rows


def _profile_counts(step: Callable[[], None], warmup: int = 2) -> tuple[int, float]:
    """(kernel-launching ops, MB allocated) of one call of ``step`` (torch.profiler, CPU)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(warmup):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    ops = 0
    allocated = 0
    for event in prof.events():
        if event.name.startswith("aten::") and event.name not in VIEWS and not event.cpu_children:
            ops += 1
        allocated += max(event.self_cpu_memory_usage, 0)
    return ops, allocated / 2**20
