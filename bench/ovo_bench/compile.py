"""``compile=blocks``: a compiled supernet training step against the eager static model and the
eager supernet step, for the AutoFormer-T and mid subnets (the GPU target is >= 1.20 x static),
each arch's compile on first use, then the warm-up of every other block shape of ``tiny``
(forward and backward: what ``compile=blocks`` training pays before its first step)."""

from __future__ import annotations

from collections.abc import Iterator

from ovo.space import Arch
from ovo.supernet.grads import SliceGrads

from .fixture import Fixture
from .report import Row
from .steps import fwd_bwd, static_zero
from .timing import first_call_s, paired_median


def arch_block_shapes(arch: Arch) -> set[tuple[int, int, int]]:
    """The (embed dim, heads, MLP hidden) of each of ``arch``'s blocks: an arch outside the
    space (AutoFormer-T's MLP ratio 3.0) may add shapes to the space's."""
    return {(arch.embed_dim, arch.num_heads[i], arch.mlp_hidden(i)) for i in range(arch.depth)}


def measure(fx: Fixture, args) -> Iterator[Row]:
    """The rows, most wanted first (each yielded when measured, so a run stopped at its time
    limit keeps what it measured): each arch's first compiled step (which compiles its block
    shapes), its compiled step against the eager static and eager supernet steps; then the
    warm-up of the space's remaining shapes (what training pays up front) and the graph count."""
    s, device, amp, x = fx.setting, fx.device, fx.amp, fx.x
    eager = fx.supernet
    net = fx.new_supernet()
    net.load_state_dict(eager.state_dict())
    # quick (the smoke tests): dynamo's graphs and guards without code generation (tests/
    # test_compile.py checks aot_eager and inductor)
    backend = "eager" if args.quick else "inductor"
    blocks = net.compile_blocks(backend=backend)
    zero, eager_zero = SliceGrads(net.parameters()).zero_, fx.slice_grads.zero_
    target = ">= 1.20" if device.type == "cuda" else ""
    archs = {name: fx.archs[name] for name in ("AutoFormer-T", "mid")}
    first_use_s = 0.0
    for name, arch in archs.items():
        static = fx.static(arch)
        step_c = fwd_bwd(lambda v, a=arch: net(v, a), x, amp, zero)
        graphs = blocks.graphs
        seconds = first_call_s(step_c, device)
        first_use_s += seconds
        yield Row(
            "compile on first use (fwd+bwd), the arch's new block shapes",
            f"tiny-{name} {s.name}",
            seconds,
            "",
            unit="s",
            detail={"new_graphs": blocks.graphs - graphs, "backend": backend},
        )
        tc, ts = paired_median(
            step_c, fwd_bwd(static, x, amp, static_zero(static)), device, args.repeats, args.warmup
        )
        _, te = paired_median(
            step_c,
            fwd_bwd(lambda v, a=arch: eager(v, a), x, amp, eager_zero),
            device,
            args.repeats,
            args.warmup,
        )
        detail = {"compiled_img_s": s.batch / tc, "static_img_s": s.batch / ts}
        detail |= {"eager_supernet_img_s": s.batch / te, "graphs": blocks.graphs}
        yield Row(
            "compiled supernet fwd+bwd / eager static",
            f"tiny-{name} {s.name}",
            ts / tc,
            target,
            detail=detail,
        )
        yield Row(
            "compiled supernet fwd+bwd / eager supernet",
            f"tiny-{name} {s.name}",
            te / tc,
            "",
            detail=detail,
        )
    zero()
    # the space's other shapes (those above are compiled already: the warm-up reuses them)
    rest_s = blocks.warm_up(net, s.batch, train=True, progress=False, context=amp)
    yield Row(
        "compile warm-up, every block shape (fwd+bwd)",
        f"tiny {s.name}",
        first_use_s + rest_s,
        "",
        unit="s",
        detail={
            "block_shapes": len(blocks.shapes),
            "first_use_s": first_use_s,
            "rest_s": rest_s,
            "backend": backend,
        },
    )
    # shapes outside the space's (AutoFormer-T's ratio 3.0) were compiled on first use
    shapes = set(blocks.shapes).union(*(arch_block_shapes(a) for a in archs.values()))
    yield Row(
        "compiled graphs after the rows above",
        f"tiny {s.name}",
        float(blocks.graphs),
        f"<= {len(shapes)}",
        unit="graphs",
        detail={"space_shapes": len(blocks.shapes), "shapes_run": len(shapes)},
    )
