"""The front of a search, as files: ``front.json``, ``front.csv``, ``evaluations.jsonl``.

**The front** is the set of archs scored on the whole fitness split that no other such arch
dominates in the search's ``objectives`` (accuracy up, costs down; every candidate is inside the
budget box already). Members are named ``f00``, ``f01``, ... by increasing first cost (ties: the
more accurate first), and each is scored once on ``final_split`` after the search.

``front.json`` (format ``ovo.search.front``, version 1)::

    objectives       ["acc", <cost>, ...]; acc is top-1 (%) on the search split, maximised;
                     costs latency (ms, predicted), params, macs are minimised
    reference        the hypervolume's reference point per objective, in their units
                     (see ovo.search.objectives: fixed by the space), and its rule as text
    hypervolume      {"search": HV, "<final_split>": HV}: normalised, in [0, 1]
    hypervolume_history  [{generation, num_evaluated, hypervolume}] on the search split, of
                     everything scored up to the end of that generation
    fitness_split, final_split, space, latency_table (path, fingerprint, device, runtime) | null
    members          [{name, arch, acc, params, macs, latency_ms, generation, images,
                       final_acc1, final_acc5}]

``front.csv`` holds the members one per row: ``name, embed_dim, depth, heads_0 ..
heads_{D-1}, mlp_ratio_0 .. mlp_ratio_{D-1}`` (D: the space's largest depth; empty past an
arch's depth), ``params, macs, latency_ms, acc, final_split, final_acc1, final_acc5,
generation``. :func:`read_front` reads a search directory's front (an exporter's one reader);
:func:`read_front_members` reads the members of either file.

``evaluations.jsonl`` has one line per evaluation of the saved state, in order: ``arch, params,
macs, latency_ms, acc, split, images, complete, generation, reused``. The search rewrites it
whole (atomically) from the state every time it saves the state, and when it starts or resumes,
so after a kill and a resume it holds every evaluation exactly once.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ovo.atomic import atomic_write_json, atomic_write_text
from ovo.errors import ConfigError
from ovo.search.moo import hypervolume, nondominated
from ovo.search.objectives import Objectives
from ovo.space import Arch

if TYPE_CHECKING:
    from ovo.search.result import EvaluatedArch

FRONT_FORMAT = "ovo.search.front"
FRONT_VERSION = 1
FITNESS_SPLIT = "search"  # accuracy is always measured on the held-out search split
REFERENCE_RULE = (
    "acc 0 %; params and macs of the space's largest arch; latency of the table's slowest arch "
    "of the space. HV of (100 - acc) / 100 and cost / reference cost against (1, ..., 1)"
)


@dataclass(frozen=True)
class FrontMember:
    """One arch of the front, with its objectives and its score on the final split."""

    name: str
    arch: Arch
    acc: float  # top-1 (%) on the search split
    params: int
    macs: int
    latency_ms: float | None
    generation: int
    images: int
    final_acc1: float | None = None
    final_acc5: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch": self.arch.to_dict(),
            "acc": self.acc,
            "params": self.params,
            "macs": self.macs,
            "latency_ms": self.latency_ms,
            "generation": self.generation,
            "images": self.images,
            "final_acc1": self.final_acc1,
            "final_acc5": self.final_acc5,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrontMember:
        def opt(key: str) -> float | None:
            return None if data.get(key) is None else float(data[key])

        return cls(
            str(data["name"]),
            Arch.from_dict(data["arch"]),
            float(data["acc"]),
            int(data["params"]),
            int(data["macs"]),
            opt("latency_ms"),
            int(data["generation"]),
            int(data["images"]),
            opt("final_acc1"),
            opt("final_acc5"),
        )


@dataclass(frozen=True)
class Front:
    """A search's front and its hypervolumes (see the module docstring)."""

    objectives: tuple[str, ...]
    reference: tuple[float, ...]
    members: tuple[FrontMember, ...]
    hypervolume: float
    history: tuple[tuple[int, int, float], ...] = ()  # (generation, num_evaluated, HV)
    final_split: str | None = None
    final_hypervolume: float | None = None
    space: dict[str, Any] | None = None
    latency_table: dict[str, Any] | None = None

    def member(self, arch: Arch) -> FrontMember | None:
        return next((m for m in self.members if m.arch == arch), None)

    def to_dict(self) -> dict[str, Any]:
        hv = {FITNESS_SPLIT: self.hypervolume}
        if self.final_split is not None:
            hv[self.final_split] = self.final_hypervolume
        return {
            "format": FRONT_FORMAT,
            "version": FRONT_VERSION,
            "objectives": list(self.objectives),
            "senses": {n: "max" if n == "acc" else "min" for n in self.objectives},
            "reference": dict(zip(self.objectives, self.reference)),
            "reference_rule": REFERENCE_RULE,
            "hypervolume": hv,
            "hypervolume_history": [
                {"generation": g, "num_evaluated": n, "hypervolume": v} for g, n, v in self.history
            ],
            "fitness_split": FITNESS_SPLIT,
            "final_split": self.final_split,
            "space": self.space,
            "latency_table": self.latency_table,
            "members": [m.to_dict() for m in self.members],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "front") -> Front:
        if data.get("format") != FRONT_FORMAT:
            raise ConfigError(f"{where} is not a search front (front.json of python -m ovo.search)")
        if data.get("version") != FRONT_VERSION:
            raise ConfigError(
                f"{where} is a front of format {data.get('version')}; this ovo reads "
                f"{FRONT_VERSION} (a newer ovo wrote it?)"
            )
        names = tuple(data["objectives"])
        final_split = data.get("final_split")
        hv = data.get("hypervolume") or {}
        return cls(
            names,
            tuple(float(data["reference"][n]) for n in names),
            tuple(FrontMember.from_dict(m) for m in data["members"]),
            float(hv[FITNESS_SPLIT]),
            tuple(
                (int(h["generation"]), int(h["num_evaluated"]), float(h["hypervolume"]))
                for h in data.get("hypervolume_history", [])
            ),
            final_split,
            None if final_split is None or hv.get(final_split) is None else float(hv[final_split]),
            data.get("space"),
            data.get("latency_table"),
        )


# ---- computing it --------------------------------------------------------------------------
def _values(objectives: Objectives, e: EvaluatedArch, acc: float | None = None) -> tuple:
    return objectives.values(e.arch, e.fitness if acc is None else acc, e.params, e.flops)


def front_entries(
    evaluated: Sequence[EvaluatedArch], objectives: Objectives
) -> list[EvaluatedArch]:
    """The front's archs (see the module docstring), in member order."""
    complete = [e for e in evaluated if e.complete]
    points = [objectives.minimised(_values(objectives, e)) for e in complete]
    members = [(complete[i], i) for i in nondominated(points)]
    members.sort(key=lambda m: (_values(objectives, m[0])[1], -m[0].fitness, m[1]))
    return [e for e, _ in members]


def front_hypervolume(
    entries: Sequence[EvaluatedArch],
    objectives: Objectives,
    reference: Sequence[float],
    acc: Callable[[EvaluatedArch], float] | None = None,
) -> float:
    """The normalised hypervolume of ``entries`` (accuracy: their fitness, or ``acc(e)``)."""
    points = [
        objectives.normalised(_values(objectives, e, None if acc is None else acc(e)), reference)
        for e in entries
        if e.complete
    ]
    return hypervolume(points, (1.0,) * len(objectives.names))


def hypervolume_history(
    evaluated: Sequence[EvaluatedArch],
    generations: Sequence[int],
    objectives: Objectives,
    reference: Sequence[float],
) -> list[tuple[int, int, float]]:
    """``(generation, num_evaluated, HV)`` of everything scored up to each generation's end
    (reused warm scores, generation -1, count from the start)."""
    out = []
    for g in generations:
        upto = [e for e in evaluated if e.generation <= g]
        out.append((g, len(upto), front_hypervolume(upto, objectives, reference)))
    return out


def build_front(
    evaluated: Sequence[EvaluatedArch],
    generations: Sequence[int],
    objectives: Objectives,
    reference: Sequence[float],
    *,
    final_split: str | None = None,
    final: Mapping[Arch, tuple[float, float]] | None = None,
    space: Mapping[str, Any] | None = None,
    latency_table: Mapping[str, Any] | None = None,
) -> Front:
    """The :class:`Front` of a search's evaluations; ``final`` maps archs to their
    ``(top-1, top-5)`` on ``final_split`` (each member must have one when it is given)."""
    entries = front_entries(evaluated, objectives)
    width = max(2, len(str(len(entries) - 1)))
    members = []
    for i, e in enumerate(entries):
        acc1, acc5 = final[e.arch] if final is not None else (None, None)
        members.append(
            FrontMember(
                f"f{i:0{width}d}",
                e.arch,
                e.fitness,
                e.params,
                e.flops,
                objectives.latency(e.arch),
                e.generation,
                e.images,
                acc1,
                acc5,
            )
        )
    final_hv = None
    if final is not None:
        final_hv = front_hypervolume(entries, objectives, reference, lambda e: final[e.arch][0])
    return Front(
        tuple(objectives.names),
        tuple(float(r) for r in reference),
        tuple(members),
        front_hypervolume(entries, objectives, reference),
        tuple(hypervolume_history(evaluated, generations, objectives, reference)),
        final_split,
        final_hv,
        dict(space) if space is not None else None,
        dict(latency_table) if latency_table is not None else None,
    )


# ---- files ---------------------------------------------------------------------------------
def _depth_of(front: Front) -> int:
    if front.space and front.space.get("depth"):
        return int(max(front.space["depth"]))
    return max((m.arch.depth for m in front.members), default=1)


def front_csv(front: Front) -> str:
    """``front.csv``'s text (see the module docstring)."""
    depth = _depth_of(front)
    heads = [f"heads_{i}" for i in range(depth)]
    ratios = [f"mlp_ratio_{i}" for i in range(depth)]
    columns = ["name", "embed_dim", "depth", *heads, *ratios, "params", "macs", "latency_ms"]
    columns += ["acc", "final_split", "final_acc1", "final_acc5", "generation"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for m in front.members:
        pad = [""] * (depth - m.arch.depth)
        writer.writerow(
            [
                m.name,
                m.arch.embed_dim,
                m.arch.depth,
                *m.arch.num_heads,
                *pad,
                *(repr(r) for r in m.arch.mlp_ratio),
                *pad,
                m.params,
                m.macs,
                "" if m.latency_ms is None else repr(m.latency_ms),
                repr(m.acc),
                front.final_split or "",
                "" if m.final_acc1 is None else repr(m.final_acc1),
                "" if m.final_acc5 is None else repr(m.final_acc5),
                m.generation,
            ]
        )
    return out.getvalue()


def write_front(directory: str | Path, front: Front) -> tuple[Path, Path]:
    """``front.json`` and ``front.csv`` in ``directory`` (each atomically)."""
    directory = Path(directory)
    json_path = atomic_write_json(directory / "front.json", front.to_dict())
    csv_path = atomic_write_text(directory / "front.csv", front_csv(front))
    return json_path, csv_path


def _members_from_csv(path: Path) -> tuple[FrontMember, ...]:
    def opt(text: str) -> float | None:
        return float(text) if text != "" else None

    members = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            depth = int(row["depth"])
            arch = Arch(
                int(row["embed_dim"]),
                [int(row[f"heads_{i}"]) for i in range(depth)],
                [float(row[f"mlp_ratio_{i}"]) for i in range(depth)],
            )
            members.append(
                FrontMember(
                    row["name"],
                    arch,
                    float(row["acc"]),
                    int(row["params"]),
                    int(row["macs"]),
                    opt(row["latency_ms"]),
                    int(row["generation"]),
                    0,  # not in the CSV
                    opt(row["final_acc1"]),
                    opt(row["final_acc5"]),
                )
            )
    return tuple(members)


def _front_file(path: str | Path) -> Path:
    path = Path(path)
    return path / "front.json" if path.is_dir() else path


def read_front(path: str | Path) -> Front:
    """The front of a search: its run directory, or its ``front.json``. The one reader an
    exporter needs (members, their objectives and final-split scores, the hypervolumes)."""
    file = _front_file(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{file} is not a readable front.json ({err}); a search writes it at its end"
        ) from None
    try:
        return Front.from_dict(data, str(file))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{file} is a damaged front.json ({err!r})") from None


def read_front_members(path: str | Path) -> tuple[FrontMember, ...]:
    """The members of a front from a search directory, ``front.json`` or ``front.csv`` (the
    CSV does not keep ``images``: read as 0)."""
    file = _front_file(path)
    if file.suffix == ".csv":
        try:
            return _members_from_csv(file)
        except (OSError, KeyError, ValueError) as err:
            raise ConfigError(f"{file} is not a readable front.csv ({err!r})") from None
    return read_front(file).members


def evaluation_line(e: EvaluatedArch, objectives: Objectives) -> dict[str, Any]:
    """One line of ``evaluations.jsonl``."""
    return {
        "arch": e.arch.to_dict(),
        "params": e.params,
        "macs": e.flops,
        "latency_ms": objectives.latency(e.arch),
        "acc": e.fitness,
        "split": FITNESS_SPLIT,
        "images": e.images,
        "complete": e.complete,
        "generation": e.generation,
        "reused": e.reused,
    }


def write_evaluations(
    path: str | Path, evaluated: Sequence[EvaluatedArch], objectives: Objectives
) -> Path:
    """``evaluations.jsonl`` of these evaluations, written whole and atomically."""
    lines = [json.dumps(evaluation_line(e, objectives), allow_nan=False) + "\n" for e in evaluated]
    return atomic_write_text(path, "".join(lines))


def read_evaluations(path: str | Path) -> list[dict[str, Any]]:
    """The lines of an ``evaluations.jsonl`` (``arch`` as an :class:`Arch`)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["arch"] = Arch.from_dict(row["arch"])
            rows.append(row)
    return rows
