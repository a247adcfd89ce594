"""ovo benchmark: supernet vs the same subnet as a static timm model, side by side in one run.

Every row is a ratio of two measurements taken interleaved in the same process (A, B, A, B...),
after warm-up, as the median of several repeats, so machine noise cancels instead of moving the
target. Prints one table and writes ``bench/results/bench.json``.

    make bench                      # full run
    python bench/run.py --quick     # one tiny repeat per row (the smoke test)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ovo.export import export_subnet
from ovo.space import Arch, SearchSpace, load_space
from ovo.supernet import SuperViT, ViTConfig


@dataclass
class Row:
    measure: str
    setting: str
    value: float
    target: str
    unit: str = "ratio"
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool | None:
        if not self.target:
            return None
        op, num = self.target.split()
        return self.value >= float(num) if op == ">=" else self.value <= float(num)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def paired_median(
    fa: Callable[[], object],
    fb: Callable[[], object],
    device: torch.device,
    repeats: int,
    warmup: int,
    inner: int,
) -> tuple[float, float]:
    """Median seconds per call of ``fa`` and ``fb``, measured interleaved."""
    for _ in range(warmup):
        fa()
        fb()
    ta, tb = [], []
    for i in range(repeats):
        # alternate who goes first so neither always runs on a warmer cache
        order = ((fa, ta), (fb, tb)) if i % 2 == 0 else ((fb, tb), (fa, ta))
        for fn, out in order:
            out.append(timed(lambda fn=fn: [fn() for _ in range(inner)], device) / inner)
    return statistics.median(ta), statistics.median(tb)


def mid_arch(space: SearchSpace) -> Arch:
    """The middle choice of every dimension (lower middle for even counts)."""
    pick = lambda c: c[(len(c) - 1) // 2]  # noqa: E731
    return Arch.uniform(
        pick(space.embed_dim), pick(space.depth), pick(space.num_heads), pick(space.mlp_ratio)
    )


SETTINGS = {  # name: (ViTConfig, batch)
    "32px/p4/b64": (ViTConfig(img_size=32, patch_size=4, num_classes=100, drop_path_rate=0.0), 64),
    "224px/p16/b16": (
        ViTConfig(img_size=224, patch_size=16, num_classes=1000, drop_path_rate=0.0),
        16,
    ),
}


def bench_speed(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[Row]:
    rows = []
    space = load_space("tiny")
    for setting, (cfg, batch) in SETTINGS.items():
        torch.manual_seed(0)
        net = SuperViT(space, cfg).to(device)
        x = torch.randn(batch, 3, cfg.img_size, cfg.img_size, device=device)
        for name, arch in (
            ("min", space.min_arch),
            ("mid", mid_arch(space)),
            ("max", space.max_arch),
        ):
            static = export_subnet(net, arch).to(device)
            autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

            def train_super():
                with autocast:
                    net(x, arch).float().sum().backward()

            def train_static():
                with autocast:
                    static(x).float().sum().backward()

            def infer_super():
                with torch.inference_mode(), autocast:
                    net(x, arch)

            def infer_static():
                with torch.inference_mode(), autocast:
                    static(x)

            ts, tt = paired_median(train_super, train_static, device, args.repeats, args.warmup, 1)
            rows.append(
                Row(
                    "fwd+bwd img/s supernet / static",
                    f"tiny-{name} {setting}",
                    tt / ts,
                    ">= 0.95",
                    detail={"supernet_img_s": batch / ts, "static_img_s": batch / tt},
                )
            )
            ts, tt = paired_median(infer_super, infer_static, device, args.repeats, args.warmup, 1)
            rows.append(
                Row(
                    "inference img/s supernet / static",
                    f"tiny-{name} {setting}",
                    tt / ts,
                    ">= 0.97",
                    detail={"supernet_img_s": batch / ts, "static_img_s": batch / tt},
                )
            )
            net.zero_grad(set_to_none=True)
    return rows


def bench_costs(args: argparse.Namespace) -> list[Row]:
    space = load_space("tiny")
    net = SuperViT(space, ViTConfig())
    import random

    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(1000 if not args.quick else 50)]
    start = time.perf_counter()
    for a in archs:
        net.cost.params(a)
        net.cost.macs(a)
    us = (time.perf_counter() - start) / len(archs) * 1e6
    return [Row("closed-form params + FLOPs per arch", "tiny, 224px", us, "<= 100", unit="us")]


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny repeat per row (smoke test)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="*", default=None, help="settings to run (default: all)")
    parser.add_argument("--out", default="bench/results/bench.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 1, 0
        SETTINGS["32px/p4/b64"] = (SETTINGS["32px/p4/b64"][0], 4)
        SETTINGS.pop("224px/p16/b16")
    if args.only:
        for k in list(SETTINGS):
            if k not in args.only:
                SETTINGS.pop(k)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    rows = bench_costs(args) + bench_speed(args, device, dtype)
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(f"\novo bench on {machine}, torch {torch.__version__}, {dtype}\n")
    print(f"| {'measure':38s} | {'setting':26s} | {'value':>8s} | {'target':8s} | ok |")
    print(f"|{'-' * 40}|{'-' * 28}|{'-' * 10}|{'-' * 10}|----|")
    for r in rows:
        ok = {True: "yes", False: "NO", None: ""}[r.ok]
        print(f"| {r.measure:38s} | {r.setting:26s} | {r.value:8.3f} | {r.target:8s} | {ok:3s}|")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": machine,
                "torch": torch.__version__,
                "dtype": str(dtype),
                "rows": [asdict(r) | {"ok": r.ok} for r in rows],
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}")
    return rows


if __name__ == "__main__":
    main()
