"""``compile=blocks``: the warm-up that compiles every block shape of ``tiny`` (forward and
backward), then a compiled supernet training step against the eager static model and the eager
supernet step, for the AutoFormer-T and mid subnets. The GPU target is >= 1.20 x static."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ovo.space import Arch
from ovo.supernet import SuperViT
from ovo.supernet.grads import SliceGrads

from .fixture import Fixture
from .report import Row
from .steps import fwd_bwd, static_zero
from .timing import paired_median


@dataclass(frozen=True)
class Compiled:
    """What the rows need of a supernet whose blocks are compiled."""

    shapes: list[tuple[int, int, int]]  # the block shapes the warm-up compiled
    warm_up_s: float
    graphs: Callable[[], int]  # graphs compiled so far


def compile_supernet(net: SuperViT, fx: Fixture, backend: str) -> Compiled:
    """Route ``net``'s blocks through one compiled graph per block shape and compile them all
    now (training graphs, under the fixture's autocast). The bench's only use of ovo's compile
    API."""
    compiled = net.compile_blocks(backend=backend)
    seconds = compiled.warm_up(net, fx.setting.batch, train=True, progress=False, context=fx.amp)
    return Compiled(list(compiled.shapes), seconds, lambda: compiled.graphs)


def arch_block_shapes(arch: Arch) -> set[tuple[int, int, int]]:
    """The (embed dim, heads, MLP hidden) of each of ``arch``'s blocks: an arch outside the
    space (AutoFormer-T's MLP ratio 3.0) may add shapes to the space's."""
    return {(arch.embed_dim, arch.num_heads[i], arch.mlp_hidden(i)) for i in range(arch.depth)}


def measure(fx: Fixture, args) -> list[Row]:
    s, device, amp, x = fx.setting, fx.device, fx.amp, fx.x
    eager = fx.supernet
    net = fx.new_supernet()
    net.load_state_dict(eager.state_dict())
    backend = "aot_eager" if args.quick else "inductor"  # the smoke test checks the wiring only
    compiled = compile_supernet(net, fx, backend)
    rows = [
        Row(
            "compile warm-up, every block shape (fwd+bwd)",
            f"tiny {s.name}",
            compiled.warm_up_s,
            "",
            unit="s",
            detail={"block_shapes": len(compiled.shapes), "backend": backend},
        )
    ]
    zero, eager_zero = SliceGrads(net.parameters()).zero_, fx.slice_grads.zero_
    target = ">= 1.20" if device.type == "cuda" else ""
    archs = {name: fx.archs[name] for name in ("AutoFormer-T", "mid")}
    # shapes outside the space's are compiled on first use (the warm-up covers the space's)
    shapes = set(compiled.shapes).union(*(arch_block_shapes(a) for a in archs.values()))
    for name, arch in archs.items():
        static = fx.static(arch)
        step_c = fwd_bwd(lambda v, a=arch: net(v, a), x, amp, zero)
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
        detail |= {"eager_supernet_img_s": s.batch / te, "graphs": compiled.graphs()}
        rows.append(
            Row(
                "compiled supernet fwd+bwd / eager static",
                f"tiny-{name} {s.name}",
                ts / tc,
                target,
                detail=detail,
            )
        )
        rows.append(
            Row(
                "compiled supernet fwd+bwd / eager supernet",
                f"tiny-{name} {s.name}",
                te / tc,
                "",
                detail=detail,
            )
        )
    rows.append(
        Row(
            "compiled graphs after the rows above",
            f"tiny {s.name}",
            float(compiled.graphs()),
            f"<= {len(shapes)}",
            unit="graphs",
            detail={"space_shapes": len(compiled.shapes), "shapes_run": len(shapes)},
        )
    )
    return rows
