"""Latency lookup tables: what each building block of an exported subnet costs on one device.

An exported subnet is a stock timm ``VisionTransformer``: a stem (patch embedding, cls token,
position embedding), one ``Block`` per layer, and a head (final norm and classifier). A table
holds the measured latency of the stem and the head at every embed dim of a space, and of a
block at every block shape (embed dim x heads x MLP hidden), for one device, thread count,
dtype, batch size and token count. A subnet's predicted latency is the sum over its parts (as
once-for-all's latency tables): microseconds to evaluate, so a search can keep a latency budget
on every candidate it draws.

A sum of parts timed alone misses what a runtime does across them: ONNX Runtime on a 2-core CPU
at batch 1 runs a whole subnet about 30% faster than its parts add up to (0 of 20 subnets within
10%; README "Deploy"). So a table also times a few whole subnets spanning the space (the
smallest, a middle one, the largest: ``calibrate``) and fits the straight line from the sum of
parts to the whole-model time (``measured = scale * sum + offset``, least squares). Predictions
go through the line only when the plain sum misses those subnets by more than
``CALIBRATION_THRESHOLD`` (:mod:`ovo.latency.calibration`) on average: a line through three
timed points also carries their timing noise (torch at batch 64: 2.9% mean error as a plain
sum, 6.5% through the line). The line is monotone (the scale is kept positive), so the order of
subnets by predicted latency is the sum's either way.

Parts are timed in PyTorch eager or, exported to ONNX, in ONNX Runtime (the table's
``runtime`` and ``provider``: :mod:`ovo.latency.runtime`); a table without them (written before
runtimes) is a torch eager one.

``python -m ovo.latency`` builds a table; ``constraints.latency_ms_max`` with
``constraints.latency_table=PATH`` makes the search keep under it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch

from ovo.errors import ConfigError
from ovo.export.timm_vit import build_timm_vit
from ovo.latency.calibration import (
    CALIBRATION_THRESHOLD,
    Calibration,
    calibration_archs,
    fit_calibration,
)
from ovo.latency.runtime import Head, Stem, runtime_problem, timer_for
from ovo.latency.timing import MODEL_KEYS, Conditions, TableConditions, device_name
from ovo.space import Arch, SearchSpace, mlp_hidden
from ovo.supernet.config import ViTConfig

TABLE_FORMAT = "ovo.latency_table"
TABLE_VERSION = 1


def _ratio(space: SearchSpace, embed_dim: int, hidden: int) -> float:
    """The space's MLP ratio that gives ``hidden`` at ``embed_dim`` (a block shape's ratio)."""
    return next(r for r in space.mlp_ratio if mlp_hidden(embed_dim, r) == hidden)


@dataclass(frozen=True)
class LatencyTable:
    """Measured milliseconds per building block (see the module docstring)."""

    conditions: TableConditions  # runtime, provider, device, threads, dtype, batch, tokens, ...
    stem_ms: dict[int, float]
    block_ms: dict[tuple[int, int, int], float]
    head_ms: dict[int, float]
    path: str = field(default="", compare=False)
    calibration: Calibration | None = None  # None: the sum of parts as is

    def __post_init__(self) -> None:
        if not isinstance(self.conditions, TableConditions):  # a plain mapping, as in a file
            object.__setattr__(self, "conditions", TableConditions(dict(self.conditions)))

    @property
    def runtime(self) -> str:
        """What the parts were timed in: ``torch`` (eager; tables without the key) or
        ``onnxruntime``."""
        return self.conditions.runtime

    @property
    def provider(self) -> str | None:
        """ONNX Runtime's execution provider (``None`` for torch)."""
        return self.conditions.provider

    # ---- prediction ---------------------------------------------------------------------
    def predict(self, arch: Arch) -> float:
        """Predicted milliseconds of ``arch`` exported and run under the table's conditions:
        the sum of its parts through the table's calibration line."""
        total = self.sum_of_parts(arch)
        return total if self.calibration is None else self.calibration(total)

    def sum_of_parts(self, arch: Arch) -> float:
        """Milliseconds of ``arch``'s stem, blocks and head as timed alone, added up."""
        e = arch.embed_dim
        try:
            total = self.stem_ms[e] + self.head_ms[e]
            for i, h in enumerate(arch.num_heads):
                total += self.block_ms[(e, h, arch.mlp_hidden(i))]
        except KeyError as err:
            raise ConfigError(
                f"latency table {self.path or ''} has no entry for {err.args[0]} of arch "
                f"{arch.short()}: it was measured for another space; build one for this space "
                "(python -m ovo.latency)"
            ) from None
        return total

    def fastest_arch(self, space: SearchSpace) -> Arch:
        """The arch of ``space`` with the least predicted latency (exact: the parts add up, and
        the calibration line is increasing)."""
        best: tuple[float, Arch] | None = None
        shapes = space.block_shapes()
        for e in space.embed_dim:
            ms, h, hidden = min((self.block_ms[s], s[1], s[2]) for s in shapes if s[0] == e)
            arch = Arch.uniform(e, space.depth[0], h, _ratio(space, e, hidden))
            total = self.stem_ms[e] + self.head_ms[e] + space.depth[0] * ms
            if best is None or total < best[0]:
                best = (total, arch)
        assert best is not None
        return best[1]

    def fastest(self, space: SearchSpace) -> float:
        """The least latency any arch of ``space`` is predicted to have."""
        return self.predict(self.fastest_arch(space))

    def fingerprint(self) -> str:
        """A short hash of the table's numbers and conditions."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return self.conditions.describe()

    # ---- checks ---------------------------------------------------------------------------
    def check_matches(
        self,
        space: SearchSpace,
        cfg: ViTConfig,
        head_dim: int,
        device: str | None = None,
        runtime: str | None = None,
    ) -> None:
        """Refuse (one :class:`ConfigError`) a table measured for another space or model, on
        another device than ``device`` (a substring of its device name, e.g. ``cpu``, ``H100``),
        or in another runtime than ``runtime``."""
        c, where = self.conditions, self.path or "the latency table"
        if runtime and runtime != self.runtime:
            raise ConfigError(
                f"{where} was timed in {self.runtime}, not in {runtime} "
                f"(constraints.latency_runtime); build one: python -m ovo.latency "
                f"runtime={runtime} (with the space, model and device of this one)"
            )
        mine = {k: v for k, v in space.to_dict().items() if k != "name"}
        theirs = {k: v for k, v in c.space.items() if k != "name"}
        if mine != theirs:
            raise ConfigError(
                f"{where} was measured for space '{c.space.get('name')}' {theirs}, not for "
                f"space '{space.name}' {mine}; build a table for it: python -m ovo.latency "
                f"space={space.name} (or ckpt_path=<the checkpoint>)"
            )
        model = {k: getattr(cfg, k) for k in MODEL_KEYS} | {"head_dim": head_dim}
        diffs = [
            f"{k}: {c.model.get(k)} there, {v} here"
            for k, v in model.items()
            if c.model.get(k) != v
        ]
        if diffs:
            raise ConfigError(
                f"{where} was measured for other model settings ({'; '.join(diffs)}); build "
                "one with the checkpoint's settings (python -m ovo.latency ckpt_path=...)"
            )
        if device and device.lower() not in c.device.lower():
            raise ConfigError(
                f"{where} was measured on '{c.device}', not on a '{device}' device; build "
                "one on the device you deploy to (python -m ovo.latency device=...)"
            )

    # ---- files ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "conditions": self.conditions.to_dict(),
            "stem_ms": {str(e): v for e, v in sorted(self.stem_ms.items())},
            "block_ms": {"-".join(map(str, k)): v for k, v in sorted(self.block_ms.items())},
            "head_ms": {str(e): v for e, v in sorted(self.head_ms.items())},
        }
        if self.calibration is not None:  # absent, a table reads and hashes as it always did
            data["calibration"] = self.calibration.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "") -> LatencyTable:
        if data.get("format") != TABLE_FORMAT:
            raise ConfigError(f"{path} is not an ovo latency table (python -m ovo.latency)")
        if data.get("version") != TABLE_VERSION:
            raise ConfigError(
                f"{path} is a latency table of format {data.get('version')}; this ovo reads "
                f"{TABLE_VERSION}: rebuild it with python -m ovo.latency"
            )
        try:
            return cls(
                TableConditions(dict(data["conditions"])),
                {int(e): float(v) for e, v in data["stem_ms"].items()},
                {
                    tuple(int(p) for p in k.split("-")): float(v)
                    for k, v in data["block_ms"].items()
                },
                {int(e): float(v) for e, v in data["head_ms"].items()},
                path,
                None
                if data.get("calibration") is None
                else Calibration.from_dict(data["calibration"]),
            )
        except (KeyError, ValueError, AttributeError) as err:
            raise ConfigError(f"{path} is a damaged latency table ({err}); rebuild it") from err


@cache
def load_table(path: str) -> LatencyTable:
    """A latency table file (read once per process)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"latency table {path} does not exist; build one with python -m ovo.latency "
            "space=... and pass its latency_table.json"
        )
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"latency table {path} cannot be read ({err}); rebuild it") from err
    return LatencyTable.from_dict(data, str(path))


def measure_table(
    space: SearchSpace,
    cfg: ViTConfig,
    head_dim: int,
    cond: Conditions,
    progress: Callable[[Any], Any] = lambda it: it,
    export_dir: Path | None = None,
    calibrate: int = 3,
) -> LatencyTable:
    """Time the stem and head at every embed dim and a block at every block shape of ``space``,
    as timm modules (what export produces), under ``cond`` (in its runtime; ONNX files of the
    parts kept in ``export_dir`` when given, and reused from it: a folder per space and model).

    A block shape is timed as a chain of ``space``'s deepest depth of blocks of that shape, each
    with its own weights, and divided by that depth: one block called alone keeps its weights
    in cache, which a whole subnet (megabytes per block) does not, so a block timed alone made
    the tables predict whole subnets 12% fast on a 2-core CPU at batch 1.

    ``calibrate`` whole subnets (:func:`calibration_archs`) are then timed as the validation
    times them and the calibration line fitted (0: none, the plain sum of parts)."""
    x = torch.randn(cond.batch, cfg.in_chans, cfg.img_size, cfg.img_size, device=cond.device)
    shapes = space.block_shapes()
    chain = max(space.depth)
    timer = timer_for(cond, export_dir)
    rounds: dict[tuple[str, Any], list[float]] = {}
    for _ in range(cond.rounds):
        for e, h, hidden in progress(shapes):
            torch.manual_seed(0)
            vit = build_timm_vit(Arch.uniform(e, chain, h, _ratio(space, e, hidden)), cfg, head_dim)
            vit = vit.to(cond.device).eval()
            tokens = torch.randn(cond.batch, cfg.num_tokens, e, device=cond.device)
            ms = timer.time(f"block-{e}-{h}-{hidden}", lambda v=vit: v.blocks, tokens) / chain
            rounds.setdefault(("block", (e, h, hidden)), []).append(ms)
            if (e, h, hidden) == min(s for s in shapes if s[0] == e):  # once per embed dim
                ms = timer.time(f"stem-{e}", lambda v=vit: Stem(v), x)
                rounds.setdefault(("stem", e), []).append(ms)
                ms = timer.time(f"head-{e}", lambda v=vit: Head(v), tokens)
                rounds.setdefault(("head", e), []).append(ms)
            del vit
    timer.close()
    stem_ms, head_ms, block_ms = {}, {}, {}
    for (part, key), times in rounds.items():
        {"stem": stem_ms, "head": head_ms, "block": block_ms}[part][key] = statistics.median(times)
    conditions = {
        **timer.conditions(),
        "device": device_name(cond.device),
        "device_type": cond.device.type,
        "threads": cond.threads or torch.get_num_threads(),
        "dtype": str(cond.dtype).removeprefix("torch."),
        "batch": cond.batch,
        "tokens": cfg.num_tokens,
        "torch": torch.__version__,
        "host": platform.node() or os.uname().nodename,
        "space": space.to_dict(),
        "model": {k: getattr(cfg, k) for k in MODEL_KEYS} | {"head_dim": head_dim},
        "repeats": cond.repeats,
        "rounds": cond.rounds,
        "block_chain": chain,  # blocks per timed call (see above)
    }
    table = LatencyTable(TableConditions(conditions), stem_ms, block_ms, head_ms)
    if calibrate <= 0:
        return table
    archs = calibration_archs(space, calibrate)

    def build(arch: Arch) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_timm_vit(arch, cfg, head_dim)

    measured = measure_models_ms(
        [lambda a=a: build(a) for a in archs], cfg, cond, export_dir, prefix="calibration-"
    )
    parts = [table.sum_of_parts(a) for a in archs]
    scale, offset = fit_calibration(parts, measured)
    miss = statistics.fmean(abs(p / m - 1) for p, m in zip(parts, measured))
    calibration = Calibration(
        scale,
        offset,
        applied=miss > CALIBRATION_THRESHOLD,
        sum_of_parts_miss=miss,
        archs=tuple(a.to_dict() for a in archs),
        parts_ms=tuple(parts),
        measured_ms=tuple(measured),
    )
    return LatencyTable(
        TableConditions(conditions), stem_ms, block_ms, head_ms, calibration=calibration
    )


def measure_model_ms(model: torch.nn.Module, cfg: ViTConfig, cond: Conditions) -> float:
    """Milliseconds of a whole (exported) model's forward under ``cond`` (the median of
    ``cond.rounds`` timings)."""
    return measure_models_ms([lambda: model], cfg, cond)[0]


def measure_models_ms(
    models: Sequence[Callable[[], torch.nn.Module]],
    cfg: ViTConfig,
    cond: Conditions,
    export_dir: Path | None = None,
    prefix: str = "",
) -> list[float]:
    """Milliseconds of each model's forward under ``cond`` (in its runtime: exported whole to
    ONNX for onnxruntime, kept in ``export_dir`` as ``<prefix>model-<i>.onnx`` when given):
    ``cond.rounds`` rounds round-robin over the models (each built by its callable when its
    turn comes, so one is held at a time), the median round of each."""
    x = torch.randn(cond.batch, cfg.in_chans, cfg.img_size, cfg.img_size, device=cond.device)
    timer = timer_for(cond, export_dir)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(cond.rounds):
        for i, build in enumerate(models):
            model = lambda b=build: b().to(cond.device).eval()  # noqa: E731
            times[i].append(timer.time(f"{prefix}model-{i}", model, x))
    timer.close()
    return [statistics.median(t) for t in times]


def same_machine(table: LatencyTable) -> bool:
    """Whether this process runs on the device (and thread count) the table was measured on,
    with its runtime at hand."""
    c = table.conditions
    device = torch.device("cuda" if c.device_type == "cuda" else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        return False
    if runtime_problem(table.runtime, table.provider, device):
        return False
    return device_name(device) == c.device and (
        device.type == "cuda" or table.runtime != "torch" or torch.get_num_threads() == c.threads
    )
