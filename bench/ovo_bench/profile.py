"""Where the supernet's time goes: ``torch.profiler`` tables (self time) of fwd+bwd of the
supernet and of the same static model, to find where a ratio below target comes from; and
deterministic op counts of one OVO step against the static teacher + student pair (what a
small shape pays per op, independent of this machine's noise)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from .fixture import Fixture
from .proxy import VIEWS
from .steps import adamw, fwd_bwd, ovo_step, static_pair_step, static_zero
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


COUNTS = ("aten ops", "kernel ops", "autograd nodes", "python nodes")


def count_ops(step: Callable[[], None], warmup: int = 1) -> tuple[dict[str, int], Counter]:
    """One call of ``step`` under the profiler (CPU events): totals of every ``aten::`` op
    (views included: each costs a dispatch), kernel-launching ops (leaf ops that are not views,
    as :mod:`.proxy` counts them), autograd nodes run, and of those the Python ones (custom
    ``autograd.Function`` backwards, each with a Python forward too); and each op name's count."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(warmup):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    totals = dict.fromkeys(COUNTS, 0)
    names: Counter = Counter()
    for e in prof.events():
        if e.name.startswith("aten::"):
            names[e.name] += 1
            totals["aten ops"] += 1
            if not e.cpu_children and e.name not in VIEWS:
                totals["kernel ops"] += 1
        elif e.name.startswith("autograd::engine::evaluate_function: "):
            node = e.name.split(": ", 1)[1]
            names[f"node {node}"] += 1
            totals["autograd nodes"] += 1
            # torch's own nodes are "<Op>Backward0/1" or "torch::autograd::..."; a custom
            # autograd.Function's is "<Name>Backward"
            if not node.endswith(("Backward0", "Backward1")) and "::" not in node:
                totals["python nodes"] += 1
    return totals, names


def op_counts(fx: Fixture) -> dict[str, dict[str, dict[str, int]]]:
    """Print and return the op counts of one OVO step (teacher + student, one backward) against
    the static teacher and student, twice: ``model``, the same step code on both sides (the
    loss of ``step_losses``, gradients cleared, no optimizer: what the supernet itself adds),
    and ``step``, the bench's OVO-step row (the supernet's AdamW against a teacher step and a
    student step with an AdamW each); with the op names whose counts differ most."""
    net, t_model, s_model = fx.supernet, fx.static(fx.teacher), fx.static(fx.student)
    by_arch = {fx.teacher: t_model, fx.student: s_model}
    pairs = {
        "model": (
            ovo_step(fx, net, fx.slice_grads.zero_),
            ovo_step(fx, lambda v, a: by_arch[a](v), static_zero(t_model, s_model)),
        ),
        "step": (
            ovo_step(fx, net, fx.slice_grads.zero_, adamw(net.parameters())),
            static_pair_step(fx, t_model, s_model),
        ),
    }
    print(f"\n== one OVO step vs the static pair, tiny {fx.setting.name} ==")
    print(f"teacher {fx.teacher.short()}\nstudent {fx.student.short()}")
    result = {}
    for label, (ovo, pair) in pairs.items():
        (ovo_totals, ovo_names), (pair_totals, pair_names) = count_ops(ovo), count_ops(pair)
        fx.slice_grads.zero_()
        result[label] = {"ovo": ovo_totals, "pair": pair_totals}
        print(f"\n{label}: | {'count':14s} | {'OVO':>6s} | {'static':>6s} | {'OVO-static':>10s} |")
        for key in COUNTS:
            o, p = ovo_totals[key], pair_totals[key]
            print(f"{'':{len(label) + 2}s}| {key:14s} | {o:6d} | {p:6d} | {o - p:+10d} |")
        diff = Counter(ovo_names)
        diff.subtract(pair_names)
        top = sorted(((n, d) for n, d in diff.items() if d), key=lambda kv: (-abs(kv[1]), kv[0]))
        print(
            "  largest differences (OVO - static): " + ", ".join(f"{n} {d:+d}" for n, d in top[:16])
        )
    return result
