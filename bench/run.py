"""ovo benchmark: the supernet against the same subnets as static timm models, in one run.

Every ratio compares two measurements taken interleaved in the same process (A, B, B, A, ...),
after warm-up, as medians of several repeats, so machine noise cancels instead of moving the
target. Prints one table and writes ``bench/results/bench.json``.

    make bench                         # full run (CPU: ~25 min on 2 cores; GPU: bf16, CUDA timing)
    python bench/run.py --quick        # one tiny repeat of every row (the smoke test)
    python bench/run.py --only 32px    # settings whose name contains "32px"
    python bench/run.py --profile min --only 32px   # torch.profiler: supernet vs static ops
    python bench/run.py --measures memory           # only the peak-memory rows
    python bench/run.py --measures compile ddp      # only the compile / DDP rows

Settings: on a GPU batch 128 at 224px and 256 at 32px (bf16); on a CPU 16 and 64 (fp32).
Archs: the tiny space's min, mid and max subnets and the released AutoFormer-T
(``conf/subnets/autoformer_ti.yaml``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ovo.distill import DistillConfig, kd_loss, label_loss
from ovo.evaluation import EvalSettings, SubnetEvaluator, make_fabric
from ovo.export import export_subnet
from ovo.paths import conf_dir
from ovo.space import Arch, SearchSpace, load_space
from ovo.supernet import SuperViT, ViTConfig
from ovo.supernet.grads import SliceGrads

MEASURES = ("speed", "memory", "compile", "ddp", "proxy")

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16


@dataclass
class Row:
    measure: str
    setting: str
    value: float | None
    target: str
    unit: str = "ratio"
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool | None:
        if not self.target or self.value is None:
            return None
        op, num = self.target.split()
        return self.value >= float(num) if op == ">=" else self.value <= float(num)


@dataclass(frozen=True)
class Setting:
    name: str
    cfg: ViTConfig
    batch: int


def settings(quick: bool, device_type: str = "cpu") -> list[Setting]:
    """GPU-realistic batches on a GPU (128 at 224px, 256 at 32px), CPU-sized ones on a CPU."""
    small = ViTConfig(img_size=32, patch_size=4, num_classes=100, drop_path_rate=0.0)
    large = ViTConfig(img_size=224, patch_size=16, num_classes=1000, drop_path_rate=0.0)
    if quick:
        return [Setting("32px/p4/b4", small, 4)]
    if device_type == "cuda":
        return [Setting("32px/p4/b256", small, 256), Setting("224px/p16/b128", large, 128)]
    return [Setting("32px/p4/b64", small, 64), Setting("224px/p16/b16", large, 16)]


def autoformer_t() -> Arch:
    """The released AutoFormer-T subnet (its 3.0 MLP ratios fit the tiny supernet's weights)."""
    return Arch.from_yaml(conf_dir() / "subnets" / "autoformer_ti.yaml")


def bench_archs(space: SearchSpace) -> list[tuple[str, Arch]]:
    return [
        ("min", space.min_arch),
        ("mid", mid_arch(space)),
        ("max", space.max_arch),
        ("AutoFormer-T", autoformer_t()),
    ]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paired_median(
    fa: Callable[[], object],
    fb: Callable[[], object],
    device: torch.device,
    repeats: int,
    warmup: int,
) -> tuple[float, float]:
    """Median seconds per call of ``fa`` and ``fb``, measured interleaved (ABBA order)."""
    for _ in range(warmup):
        fa()
        fb()
    times: dict[int, list[float]] = {0: [], 1: []}
    for i in range(repeats):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            fn = fa if which == 0 else fb
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[which].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def mid_arch(space: SearchSpace) -> Arch:
    """The middle choice of every dimension (lower middle for even counts)."""
    c = lambda v: v[(len(v) - 1) // 2]  # noqa: E731
    return Arch.uniform(c(space.embed_dim), c(space.depth), c(space.num_heads), c(space.mlp_ratio))


# ---- step functions (built by factories so every closure binds its own objects) -------------
def fwd_bwd(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    amp,
    zero: Callable[[], None] | None = None,
) -> Callable:
    """Forward + backward, the gradients cleared first (``zero``) as a training step does."""

    def step() -> None:
        if zero is not None:
            zero()
        with amp():
            model(x).float().sum().backward()

    return step


def supernet_zero(net: SuperViT) -> Callable[[], None]:
    """How a training step clears the supernet's gradients: its SliceGrads buffers (only what
    was written), attached here once."""
    grads = SliceGrads(net.parameters())
    return grads.zero_


def static_zero(model: nn.Module) -> Callable[[], None]:
    return lambda: model.zero_grad(set_to_none=True)


def inference(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, amp) -> Callable:
    def step() -> None:
        with torch.inference_mode(), amp():
            model(x)

    return step


def ovo_step(
    net: SuperViT,
    teacher: Arch,
    student: Arch,
    x,
    y,
    opt,
    amp,
    kd: DistillConfig,
    zero: Callable[[], None] | None = None,
    after_backward: Callable[[], None] = lambda: None,
):
    """One online-distillation step: teacher CE + student KD, one backward, ``after_backward``
    (e.g. a gradient all-reduce), one optimizer step (gradients cleared by ``zero``, the
    supernet's SliceGrads in training; else the optimizer). ``net(x, arch)`` may be a DDP
    wrapper."""

    def step() -> None:
        (zero or (lambda: opt.zero_grad(set_to_none=True)))()
        with amp():
            t = net(x, teacher)
            s = net(x, student)
            loss = label_loss(t, y) + kd_loss(s, t, kd)
        loss.backward()
        after_backward()
        opt.step()

    return step


def static_pair_step(
    t_model: nn.Module, s_model: nn.Module, x, y, opt_t, opt_s, amp, kd: DistillConfig
):
    """The same work on two static models: teacher step, then student step against it."""

    def step() -> None:
        opt_t.zero_grad(set_to_none=True)
        with amp():
            t = t_model(x)
            loss_t = label_loss(t, y)
        loss_t.backward()
        opt_t.step()
        opt_s.zero_grad(set_to_none=True)
        with amp():
            loss_s = kd_loss(s_model(x), t.detach(), kd)
        loss_s.backward()
        opt_s.step()

    return step


def single_step(model: nn.Module, x, y, opt, amp):
    """One static model's training step (CE; the student's KD target costs the same memory).
    Gradients stay allocated between steps, as the supernet's SliceGrads buffer does, so both
    peaks are over a steady state of weights, optimizer state and gradient storage."""

    def step() -> None:
        opt.zero_grad(set_to_none=False)
        with amp():
            loss = label_loss(model(x), y)
        loss.backward()
        opt.step()

    return step


def adamw(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-6, weight_decay=0.05)


# ---- rows -----------------------------------------------------------------------------------
def bench_costs(quick: bool) -> list[Row]:
    space = load_space("tiny")
    net = SuperViT(space, ViTConfig())
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(50 if quick else 2000)]
    start = time.perf_counter()
    for a in archs:
        net.cost.params(a)
        net.cost.macs(a)
    us = (time.perf_counter() - start) / len(archs) * 1e6
    return [Row("closed-form params + FLOPs per arch", "tiny, 224px", us, "< 100", unit="us")]


def teacher_student_pair(space: SearchSpace) -> tuple[Arch, Arch]:
    """A representative pair of the default mode: teacher from the upper pool, uniform student."""
    rng = random.Random(0)
    return space.sample(rng, space.upper(2)), space.sample(rng)


def bench_speed(s: Setting, args, device, amp, peak_tflops) -> list[Row]:
    rows: list[Row] = []
    space = load_space("tiny")
    torch.manual_seed(0)
    net = SuperViT(space, s.cfg).to(device)
    x = torch.randn(s.batch, 3, s.cfg.img_size, s.cfg.img_size, device=device)
    y = torch.randint(0, s.cfg.num_classes, (s.batch,), device=device)
    zero = supernet_zero(net)
    for name, arch in bench_archs(space):
        static = export_subnet(net, arch).to(device)
        ts, tt = paired_median(
            fwd_bwd(lambda v, a=arch: net(v, a), x, amp, zero),
            fwd_bwd(static, x, amp, static_zero(static)),
            device,
            args.repeats,
            args.warmup,
        )
        detail = {"supernet_img_s": s.batch / ts, "static_img_s": s.batch / tt}
        if peak_tflops:
            flops = 3 * 2 * net.num_macs(arch) * s.batch
            detail["supernet_mfu"] = flops / ts / (peak_tflops * 1e12)
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
    # one OVO step vs a static teacher step + a static student step
    teacher, student = teacher_student_pair(space)
    kd = DistillConfig()
    t_model, s_model = (
        export_subnet(net, teacher).to(device),
        export_subnet(net, student).to(device),
    )
    ovo = ovo_step(net, teacher, student, x, y, adamw(net.parameters()), amp, kd, zero)
    pair = static_pair_step(
        t_model, s_model, x, y, adamw(t_model.parameters()), adamw(s_model.parameters()), amp, kd
    )
    to, tp = paired_median(ovo, pair, device, args.repeats, args.warmup)
    rows.append(
        Row(
            "OVO step time / (static teacher + student step)",
            f"tiny {s.name}",
            to / tp,
            "<= 1.05",
            detail={
                "ovo_step_s": to,
                "static_pair_s": tp,
                "teacher": teacher.short(),
                "student": student.short(),
            },
        )
    )
    # search-time evaluation: the evaluator over many archs vs static inference of the same
    archs = [space.sample(random.Random(i)) for i in range(2 if args.quick else 6)]
    statics = [export_subnet(net, a).to(device).eval() for a in archs]
    fabric = make_fabric(EvalSettings(accelerator=device.type, devices=1))
    loader = [(x.cpu(), y.cpu())] * (1 if args.quick else 3)
    evaluator = SubnetEvaluator(net, loader, fabric, cache=True)
    evaluator.evaluate(archs)  # fills the cache (the search's steady state)

    def run_static() -> None:
        with torch.inference_mode(), amp():
            for _ in loader:
                for m in statics:
                    m(x)

    te, tst = paired_median(
        lambda: evaluator.evaluate(archs), run_static, device, args.repeats, args.warmup
    )
    rows.append(
        Row(
            "search eval arch*img/s / static inference",
            f"tiny {s.name}",
            tst / te,
            ">= 0.95",
            detail={"arch_img_s": len(archs) * len(loader) * s.batch / te},
        )
    )
    zero()
    return rows


def bench_compile(s: Setting, args, device, amp) -> list[Row]:
    """``compile=blocks``: the warm-up that compiles every block shape of ``tiny`` (forward and
    backward), then a compiled supernet training step against the eager static and the eager
    supernet step, for the AutoFormer-T and mid subnets. The GPU target is >= 1.20 x static."""
    space = load_space("tiny")
    torch.manual_seed(0)
    eager_net = SuperViT(space, s.cfg).to(device)
    net = SuperViT(space, s.cfg).to(device)
    net.load_state_dict(eager_net.state_dict())
    backend = "aot_eager" if args.quick else "inductor"  # the smoke test checks the wiring only
    compiled = net.compile_blocks(backend=backend)
    seconds = compiled.warm_up(net, s.batch, train=True, progress=False, context=amp)
    rows = [
        Row(
            "compile warm-up, every block shape (fwd+bwd)",
            f"tiny {s.name}",
            seconds,
            "",
            unit="s",
            detail={"block_shapes": len(compiled.shapes), "backend": backend},
        )
    ]
    x = torch.randn(s.batch, 3, s.cfg.img_size, s.cfg.img_size, device=device)
    zero, eager_zero = supernet_zero(net), supernet_zero(eager_net)
    target = ">= 1.20" if device.type == "cuda" else ""
    archs = (("AutoFormer-T", autoformer_t()), ("mid", mid_arch(space)))
    # AutoFormer-T's MLP ratio 3.0 is outside tiny's choices: its blocks of that ratio are one
    # more shape, compiled on first use (the warm-up covers the space's shapes only)
    shapes = set(compiled.shapes) | {
        (a.embed_dim, a.num_heads[i], a.mlp_hidden(i)) for _, a in archs for i in range(a.depth)
    }
    for name, arch in archs:
        static = export_subnet(eager_net, arch).to(device)
        step_c = fwd_bwd(lambda v, a=arch: net(v, a), x, amp, zero)
        tc, ts = paired_median(
            step_c, fwd_bwd(static, x, amp, static_zero(static)), device, args.repeats, args.warmup
        )
        _, te = paired_median(
            step_c,
            fwd_bwd(lambda v, a=arch: eager_net(v, a), x, amp, eager_zero),
            device,
            args.repeats,
            args.warmup,
        )
        detail = {"compiled_img_s": s.batch / tc, "static_img_s": s.batch / ts}
        detail |= {"eager_supernet_img_s": s.batch / te, "graphs": compiled.graphs}
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
            float(compiled.graphs),
            f"<= {len(shapes)}",
            unit="graphs",
            detail={"space_shapes": len(compiled.shapes), "shapes_run": len(shapes)},
        )
    )
    return rows


# ---- DDP overhead: separate processes (gloo on CPU, NCCL on GPU) --------------------------------
DDP_MODES = ("ovo_ddp", "torch_ddp_unused")


def _ddp_step_seconds(
    rank: int, world: int, init: str, mode: str, setting: str, quick: bool, reps: int, out: str
) -> None:
    """One process of a DDP overhead measurement: median seconds of an OVO training step with
    ``mode``'s data parallelism and of the same step without it (no collective, no wrapper),
    timed interleaved (ABBA) in this process, so the machine's drift between processes does
    not enter the ratio."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    s = next(v for v in settings(quick, device.type) if v.name == setting)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, init_method=f"file://{init}", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = SuperViT(load_space("tiny"), s.cfg).to(device)
    teacher, student = teacher_student_pair(net.space)
    x = torch.randn(s.batch, 3, s.cfg.img_size, s.cfg.img_size, device=device)
    y = torch.randint(0, s.cfg.num_classes, (s.batch,), device=device)
    amp = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)  # noqa: E731
    kd = DistillConfig()
    opt = adamw(net.parameters())
    if mode == "torch_ddp_unused":  # ovo before: torch's DDP, autograd slices, unused search
        model = DistributedDataParallel(net, find_unused_parameters=True)
        zero = None  # the optimizer's zero_grad
        parallel = ovo_step(model, teacher, student, x, y, opt, amp, kd, zero)
    else:
        grads = SliceGrads(net.parameters())
        zero = grads.zero_
        parallel = ovo_step(net, teacher, student, x, y, opt, amp, kd, zero, grads.all_reduce_)
    times: dict[str, list[float]] = {"parallel": [], "plain": []}
    # the plain step calls the module itself: a DDP wrapper's gradient hooks stay idle (no
    # forward went through the wrapper), SliceGrads are simply not all-reduced
    runs = {
        "parallel": parallel,
        "plain": ovo_step(net, teacher, student, x, y, opt, amp, kd, zero),
    }
    for i in range(reps + 1):
        for name in ("parallel", "plain") if i % 2 == 0 else ("plain", "parallel"):
            dist.barrier()  # both ranks start each timed step together
            sync(device)
            start = time.perf_counter()
            runs[name]()
            sync(device)
            if i >= 1:  # the first pair warms up
                times[name].append(time.perf_counter() - start)
    if rank == 0:
        medians = {k: statistics.median(v) for k, v in times.items()}
        Path(out).write_text(json.dumps(medians))
    dist.destroy_process_group()


def _ddp_run(mode: str, world: int, setting: str, args) -> dict[str, float]:
    """Median step seconds with and without ``mode``'s data parallelism over ``world``
    processes, each a fresh ``bench/run.py --ddp-child`` process (no pickled code: it works
    however this script was loaded)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out, init = f"{tmp}/seconds.json", f"{tmp}/init"
        reps = str(max(args.repeats, 1))
        quick = "1" if args.quick else "0"
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--ddp-child", str(rank), str(world), init, mode]
                + [setting, quick, reps, out],
                cwd=Path(__file__).resolve().parents[1],
            )
            for rank in range(world)
        ]
        codes = [p.wait() for p in procs]
        if any(codes):
            raise RuntimeError(f"DDP benchmark {mode} x{world} failed: exit codes {codes}")
        return json.loads(Path(out).read_text())


def bench_ddp(s: Setting, args, device) -> list[Row]:
    """A DDP training step (teacher + student + AdamW) against the same step without data
    parallelism in the same processes (one thread each, timed interleaved): ovo's strategy (no
    wrapper, one all-reduce of the slice-gradient buffer) and torch's DDP with
    ``find_unused_parameters=True`` (what ovo used before), at world size 1 and, on a CPU or
    with 2+ GPUs, 2. At world size 2 the plain step runs on both ranks side by side, so the
    ratio is what DDP adds (collectives, waiting for the slower rank, the unused-parameter
    search), not what two processes sharing one machine cost each other."""
    worlds = [1] if device.type == "cuda" and torch.cuda.device_count() < 2 else [1, 2]
    modes = DDP_MODES
    if args.quick:  # the smoke test: the wiring of each mode, once
        worlds, modes = [2], ("ovo_ddp",)
    rows = []
    for world in worlds:
        for mode in modes:
            seconds = _ddp_run(mode, world, s.name, args)
            rows.append(
                Row(
                    f"DDP step / plain step - 1 ({mode})",
                    f"tiny world {world} {s.name}",
                    seconds["parallel"] / seconds["plain"] - 1,
                    "<= 0.10" if mode == "ovo_ddp" and "224" in s.name else "",
                    detail={"ddp_step_s": seconds["parallel"], "plain_step_s": seconds["plain"]},
                )
            )
    return rows


# ---- where a sliced step's extra work is: a CPU-measurable proxy of the slicing tax ----------
def _profile_counts(step: Callable[[], None], warmup: int = 2) -> tuple[int, float]:
    """(kernel-launching ops, MB allocated) of one call of ``step`` (torch.profiler, CPU)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(warmup):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    views = {
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
    ops = 0
    allocated = 0
    for event in prof.events():
        if event.name.startswith("aten::") and event.name not in views and not event.cpu_children:
            ops += 1
        allocated += max(event.self_cpu_memory_usage, 0)
    return ops, allocated / 2**20


def bench_proxy(s: Setting, args, device) -> list[Row]:
    """Extra kernel-launching ops and extra MB allocated per OVO training step (teacher +
    student, gradients cleared, AdamW not included), supernet minus the two static models,
    before (autograd's slice backward) and after (slice gradients written in place)."""
    space = load_space("tiny")
    torch.manual_seed(0)
    teacher, student = teacher_student_pair(space)
    kd = DistillConfig()
    x = torch.randn(s.batch, 3, s.cfg.img_size, s.cfg.img_size)
    y = torch.randint(0, s.cfg.num_classes, (s.batch,))
    amp = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731

    def supernet_step(autograd_slices: bool) -> Callable[[], None]:
        net = SuperViT(space, s.cfg)  # no SliceGrads attached: autograd's slices
        zero = (lambda: net.zero_grad(set_to_none=True)) if autograd_slices else supernet_zero(net)

        def step() -> None:
            zero()
            t = net(x, teacher)
            (label_loss(t, y) + kd_loss(net(x, student), t, kd)).backward()

        return step

    net = SuperViT(space, s.cfg)
    t_model, s_model = export_subnet(net, teacher), export_subnet(net, student)

    def static_step() -> None:
        t_model.zero_grad(set_to_none=True)
        s_model.zero_grad(set_to_none=True)
        t = t_model(x)
        label_loss(t, y).backward()
        kd_loss(s_model(x), t.detach(), kd).backward()

    del amp
    static_ops, static_mb = _profile_counts(static_step)
    rows = []
    for label, autograd_slices in (("before: autograd slices", True), ("after: in place", False)):
        ops, mb = _profile_counts(supernet_step(autograd_slices))
        detail = {"supernet_ops": ops, "static_ops": static_ops}
        detail |= {"supernet_mb": mb, "static_mb": static_mb}
        rows.append(
            Row(
                f"extra ops / step, {label}",
                f"tiny {s.name}",
                float(ops - static_ops),
                "",
                "ops",
                detail,
            )
        )
        rows.append(
            Row(
                f"extra MB allocated / step, {label}",
                f"tiny {s.name}",
                mb - static_mb,
                "",
                "MB",
                detail,
            )
        )
    return rows


def _peak_rss_child(kind: str, setting: str, quick: bool) -> float:
    """Peak resident memory (MB) a step adds over the steady state (weights + optimizer state),
    measured in a fresh process so earlier allocations do not hide it."""
    code = (
        "import sys; sys.path.insert(0, 'bench'); import run; "
        f"print(run.step_peak_rss({kind!r}, {setting!r}, {quick!r}))"
    )
    # large blocks mmapped and freed memory returned at once: RSS then follows the live tensors
    # instead of what glibc keeps cached from the warm-up step
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        env=env,
    )
    return float(out.stdout.strip().splitlines()[-1])


def step_peak_rss(kind: str, setting: str, quick: bool) -> float:
    """Peak RSS (MB) one step of ``kind`` (ovo, teacher, student) adds over the steady state."""
    s = next(v for v in settings(quick, "cpu") if v.name == setting)
    space = load_space("tiny")
    torch.manual_seed(0)
    net = SuperViT(space, s.cfg)
    x = torch.randn(s.batch, 3, s.cfg.img_size, s.cfg.img_size)
    y = torch.randint(0, s.cfg.num_classes, (s.batch,))
    teacher, student = teacher_student_pair(space)
    kd = DistillConfig()
    ctx = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    if kind == "ovo":
        zero = supernet_zero(net)
        step = ovo_step(net, teacher, student, x, y, adamw(net.parameters()), ctx, kd, zero)
    else:
        model = export_subnet(net, teacher if kind == "teacher" else student)
        del net
        step = single_step(model, x, y, adamw(model.parameters()), ctx)
    step()  # optimizer state now exists: that is the steady state
    before = _rss_mb()
    # ru_maxrss is the lifetime peak, which building the supernet (and, for the static steps,
    # exporting from it) may have set before the step: reset the kernel's high-water mark so
    # the peak is the step's own (Linux >= 4.0)
    reset = _reset_peak_rss()
    step()
    peak = (
        _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return peak - before


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(key)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def bench_memory(s: Setting, args, device) -> list[Row]:
    if device.type == "cuda":
        results = {}
        space = load_space("tiny")
        teacher, student = teacher_student_pair(space)
        kd = DistillConfig()
        x = torch.randn(s.batch, 3, s.cfg.img_size, s.cfg.img_size, device=device)
        y = torch.randint(0, s.cfg.num_classes, (s.batch,), device=device)
        amp = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
        for kind in ("ovo", "teacher", "student"):
            torch.manual_seed(0)
            net = SuperViT(space, s.cfg).to(device)
            if kind == "ovo":
                zero = supernet_zero(net)
                step = ovo_step(net, teacher, student, x, y, adamw(net.parameters()), amp, kd, zero)
            else:
                model = export_subnet(net, teacher if kind == "teacher" else student).to(device)
                del net
                step = single_step(model, x, y, adamw(model.parameters()), amp)
            step()
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            torch.cuda.synchronize(device)
            results[kind] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
            del step
            torch.cuda.empty_cache()
    else:  # a fresh process per step; quick (smoke test) runs in-process, numbers not meaningful
        measure = step_peak_rss if args.quick else _peak_rss_child
        results = {k: measure(k, s.name, args.quick) for k in ("ovo", "teacher", "student")}
    pair_mb = results["teacher"] + results["student"]
    return [
        Row(
            "peak step memory, OVO / (static teacher + student)",
            f"tiny {s.name}",
            results["ovo"] / max(pair_mb, 1e-9),
            "<= 1.15",
            detail={f"{k}_mb": v for k, v in results.items()},
        )
    ]


def profile(s: Setting, which: str, args, device, amp) -> None:
    """Print the ops that take the time in fwd+bwd of the supernet and of the same static model
    (``torch.profiler``, self time), to find where a ratio below target comes from."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    space = load_space("tiny")
    arch = {"min": space.min_arch, "mid": mid_arch(space), "max": space.max_arch}[which]
    torch.manual_seed(0)
    net = SuperViT(space, s.cfg).to(device)
    static = export_subnet(net, arch).to(device)
    x = torch.randn(s.batch, 3, s.cfg.img_size, s.cfg.img_size, device=device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for label, model in (("supernet", lambda v: net(v, arch)), ("static timm", static)):
        step = fwd_bwd(model, x, amp)
        for _ in range(args.warmup):
            step()
        with torch_profile(activities=activities) as prof:
            for _ in range(args.repeats):
                step()
                sync(device)
        print(f"\n== {label}, tiny-{which} {s.name}, {args.repeats} fwd+bwd ==")
        print(prof.key_averages().table(sort_by=key, row_limit=14))


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny repeat per row (smoke test)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", default="", help="run settings whose name contains this")
    parser.add_argument("--out", default="bench/results/bench.json")
    parser.add_argument(
        "--measures",
        nargs="+",
        choices=("all", *MEASURES),
        default=["all"],
        help="speed: costs, throughput, OVO step, search; memory: peak step memory; compile: "
        "compiled supernet step and warm-up; ddp: DDP overhead; proxy: extra ops/MB per step",
    )
    parser.add_argument(
        "--profile", choices=("min", "mid", "max"), help="profile this arch's fwd+bwd and exit"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 1, 0
    device = torch.device(args.device)
    bf16 = device.type == "cuda"

    def amp():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in machine), None) if bf16 else None
    if args.profile:
        for s in settings(args.quick, device.type):
            if args.only in s.name:
                profile(s, args.profile, args, device, amp)
        return []
    chosen = set(MEASURES) if "all" in args.measures else set(args.measures)
    rows = bench_costs(args.quick) if "speed" in chosen else []
    for s in settings(args.quick, device.type):
        if args.only not in s.name:
            continue
        if "speed" in chosen:
            rows += bench_speed(s, args, device, amp, peak)
        if "memory" in chosen:
            rows += bench_memory(s, args, device)
        if "proxy" in chosen and device.type == "cpu":
            rows += bench_proxy(s, args, device)
        if "compile" in chosen:
            rows += bench_compile(s, args, device, amp)
        if "ddp" in chosen:
            rows += bench_ddp(s, args, device)
    print(
        f"\novo bench: {machine}, torch {torch.__version__}, "
        f"{'bf16' if bf16 else 'fp32'}, {args.repeats} repeats (median)\n"
    )
    print(f"| {'measure':50s} | {'setting':24s} | {'value':>8s} | {'target':8s} | ok |")
    print(f"|{'-' * 52}|{'-' * 26}|{'-' * 10}|{'-' * 10}|----|")
    for r in rows:
        ok = {True: "yes", False: "NO", None: "-"}[r.ok]
        value = "n/a" if r.value is None else f"{r.value:8.3f}"
        print(f"| {r.measure:50s} | {r.setting:24s} | {value:>8s} | {r.target:8s} | {ok:3s}|")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": machine,
                "torch": torch.__version__,
                "bf16": bf16,
                "repeats": args.repeats,
                "rows": [asdict(r) | {"ok": r.ok} for r in rows],
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--ddp-child":  # one process of bench_ddp
        rank, world, init, mode, setting, quick, reps, out = sys.argv[2:]
        _ddp_step_seconds(int(rank), int(world), init, mode, setting, quick == "1", int(reps), out)
    else:
        main()
