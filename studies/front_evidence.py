"""Evidence for the front search (docs/studies/front.md): random search, evolution, NSGA-II and
LINAS side by side on trained supernets, 3 seeds x 500 real evaluations each, against a
reference front.

Every run is ovo's own :class:`~ovo.search.loop.Search` (the loop ``python -m ovo.search``
runs), driven in one worker process per supernet so the runs share the loaded checkpoint, the
search split's batches and one **score cache** (``scores.jsonl`` beside the runs): an arch's
top-1 on the search split is a deterministic function of (weights, split), so an arch a second
run proposes is looked up instead of scored again. A cache hit still counts as a real evaluation
of the run that proposed it (the run's trajectory and evaluation count are exactly those of an
uncached search); the cache only saves wall time.

The reference front of a supernet and objectives is everything any run of that supernet
evaluated: the four random-search runs (seeds 0-3, 500 uniform random archs each: the
2,000-arch random sample) and every evolution, NSGA-II and LINAS run. Random search and
evolution do not depend on the objectives (no budget box here), so one run of each serves every
objective; their front is read under each objective pair.

Resumable at every level: each run resumes from its ``search_state.json`` (the search's own
resume), the score cache is appended after each scored batch, finished runs leave ``done.json``
and a record in ``--records`` (committed as they finish), and the worker runs are
:class:`ovo.jobs.Job` s (a finished worker is skipped).

    python studies/front_evidence.py --nano CKPT --quickstart CKPT          # run (hours)
    python studies/front_evidence.py --nano CKPT --table latency_table.json  # + [acc,latency]
    python studies/front_evidence.py --report                               # tables from records
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ovo.atomic import atomic_write_json
from ovo.jobs import Job, Pool

RECORDS = Path("docs/front_evidence")
WORK = Path("outputs/front_evidence")
STRATEGIES = ("random", "evolution", "nsga2", "linas")
SEEDS = (0, 1, 2)
REFERENCE_SEED = 3  # the fourth random run: with seeds 0-2, the 2,000-arch random sample
# what each supernet is searched over; random/evolution ignore the objectives
OBJECTIVES = {"nano": (("acc", "params"), ("acc", "latency")), "quickstart": (("acc", "params"),)}
SETTINGS = {  # AutoFormer's sizes; 500 real evaluations per run
    "population": 50,
    "generations": 10,
    "parents": 10,
    "mutations": 25,
    "crossovers": 25,
}
LINAS = {"initial": 50, "batch": 50, "inner_evals": 5000, "predictor": "auto"}
THRESHOLDS = (0.95, 0.98, 0.99)
CHECKPOINTS = (50, 100, 150, 200, 300, 400, 500)
RANKED = Path("docs/rank_cifar10/standalone/results.json")  # the 16 archs, two seeds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nano", type=Path, help="the ranking preset's supernet (last.ckpt)")
    p.add_argument("--quickstart", type=Path, help="the quickstart's supernet (last.ckpt)")
    p.add_argument("--table", type=Path, help="nano: ONNX Runtime latency_table.json")
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--records", type=Path, default=RECORDS)
    p.add_argument("--nice", type=int, default=10, help="niceness of the workers")
    p.add_argument("--report", action="store_true", help="only the report, from --records")
    p.add_argument("--population", type=int, default=SETTINGS["population"])
    p.add_argument("--generations", type=int, default=SETTINGS["generations"])
    p.add_argument("--inner-evals", type=int, default=LINAS["inner_evals"])
    p.add_argument(
        "--acc-floor",
        help="report: the hypervolume's accuracy floor instead of the space's (0 %%): a number, "
        "or random-min (the lowest top-1 of the 2,000-arch random sample)",
    )
    p.add_argument("--worker", choices=sorted(OBJECTIVES), help=argparse.SUPPRESS)
    p.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- runs ---------------------------------------------------------------------------------------
def run_names(supernet: str, with_latency: bool) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """``(name, strategy, seed, objectives)`` of every run of ``supernet``, in the order they
    run: seed by seed (a partial table is still a table), the reference sample's extra random
    run after the [acc,params] runs, the latency runs last."""
    out = []
    first = OBJECTIVES[supernet][0]
    for seed in SEEDS:
        for strategy in STRATEGIES:
            tag = f"-{'-'.join(first[1:])}" if strategy in ("nsga2", "linas") else ""
            out.append((f"{strategy}{tag}-seed{seed}", strategy, seed, first))
    out.append((f"random-seed{REFERENCE_SEED}", "random", REFERENCE_SEED, first))
    for objectives in OBJECTIVES[supernet][1:]:
        if "latency" in objectives and not with_latency:
            continue
        for seed in SEEDS:
            for strategy in ("nsga2", "linas"):
                tag = "-".join(objectives[1:])
                out.append((f"{strategy}-{tag}-seed{seed}", strategy, seed, objectives))
    return out


class ScoreCache:
    """Top-1 hits on the search split by arch, appended to ``path`` as they are scored."""

    def __init__(self, path: Path, scored_with: dict[str, Any], evaluator: Any) -> None:
        self.path, self.evaluator = path, evaluator
        self.hits: dict[str, tuple[int, int]] = {}
        self.scored = self.looked_up = 0
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            head = json.loads(lines[0]) if lines else {}
            if head.get("scored_with") != scored_with:
                raise SystemExit(
                    f"{path} was scored with {head.get('scored_with')}, not {scored_with}"
                )
            for line in lines[1:]:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: scored again
                    continue
                self.hits[row["arch"]] = (row["hits1"], row["images"])
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"scored_with": scored_with}) + "\n", encoding="utf-8")

    def __call__(self, archs: list) -> list[float]:
        keys = [a.to_json() for a in archs]
        missing = [a for a, k in zip(archs, keys) if k not in self.hits]
        if missing:
            scores = self.evaluator.evaluate(missing)
            with self.path.open("a", encoding="utf-8") as f:
                for a, s in zip(missing, scores):
                    self.hits[a.to_json()] = (s.hits1, s.num_images)
                    f.write(
                        json.dumps({"arch": a.to_json(), "hits1": s.hits1, "images": s.num_images})
                    )
                    f.write("\n")
                f.flush()
                os.fsync(f.fileno())
        self.scored += len(missing)
        self.looked_up += len(archs) - len(missing)
        # exactly the command's fitness: 100 * acc1, acc1 = hits / images
        return [100.0 * (self.hits[k][0] / self.hits[k][1]) for k in keys]


def write_record(path: Path, record: dict[str, Any]) -> None:
    """A run's record: indented JSON, one evaluation per line (thousands of them)."""
    from ovo.atomic import atomic_write_text

    head = {k: v for k, v in record.items() if k != "evaluations"}
    rows = ",\n  ".join(json.dumps(r, separators=(",", ":")) for r in record["evaluations"])
    text = json.dumps(head, indent=1, allow_nan=False)[:-2]
    atomic_write_text(path, f'{text},\n "evaluations": [\n  {rows}\n ]\n}}\n')


def worker(args: argparse.Namespace) -> None:
    """Every run of one supernet, in one process (see the module docstring)."""
    from ovo.budget import Constraints
    from ovo.checkpoint import load_supernet
    from ovo.latency import load_table
    from ovo.scoring import SubnetEvaluator, make_fabric
    from ovo.search.fitness import FullFitness
    from ovo.search.front import read_evaluations
    from ovo.search.linas import LinasSettings
    from ovo.search.loop import Search, SearchSettings
    from ovo.search.objectives import Objectives
    from ovo.search.warm import indices_fingerprint, weights_fingerprint
    from ovo.space import Arch

    supernet = args.worker
    loaded = load_supernet(args.ckpt)
    space, cost = loaded.space, loaded.net.cost
    dm = loaded.datamodule()
    fabric = make_fabric()
    evaluator = SubnetEvaluator(loaded.net, dm.search_dataloader(), fabric, cache=True)
    split_images = evaluator.num_images()
    # what python -m ovo.search records: its warm_start can start from these runs
    scored_with = {
        "weights": weights_fingerprint(loaded.net.state_dict()),
        "split": "search",
        "split_indices": indices_fingerprint(dm.split_indices()["search"]),
        "max_batches": None,
        "split_images": split_images,
    }
    root = args.work / supernet
    cache = ScoreCache(root / "scores.jsonl", scored_with, evaluator)
    table = load_table(args.table) if args.table else None
    records = args.records / supernet
    records.mkdir(parents=True, exist_ok=True)
    reference = {}
    for names in OBJECTIVES[supernet]:
        if "latency" in names and table is None:
            continue
        obj = Objectives(names, table if "latency" in names else None)
        reference["-".join(names[1:])] = list(obj.reference(space, cost))
    atomic_write_json(
        records / "supernet.json",
        {
            "checkpoint": str(args.ckpt),
            "space": space.to_dict(),
            "split_images": split_images,
            "scored_with": scored_with,
            "latency_table": None if args.table is None else str(args.table),
            "latency_table_fingerprint": None if table is None else table.fingerprint(),
            "reference": reference,
        },
    )

    # the 16 ranked archs, scored once (inherited accuracy on the search split)
    if supernet == "nano" and RANKED.is_file():
        ranked = {
            json.dumps(r["arch"], sort_keys=True): r["arch"] for r in json.loads(RANKED.read_text())
        }
        archs = [Arch.from_dict(a) for a in ranked.values()]
        accs = cache(archs)
        atomic_write_json(
            records / "ranked16.json",
            {"archs": [a.to_dict() for a in archs], "inherited_search_acc1": accs},
        )

    for name, strategy, seed, names in run_names(supernet, table is not None):
        run_dir = root / name
        if (run_dir / "done.json").is_file():
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        objectives = Objectives(names, table if "latency" in names else None)
        sizes = SETTINGS | {"population": args.population, "generations": args.generations}
        sizes["parents"] = min(sizes["parents"], args.population)
        sizes["mutations"] = sizes["crossovers"] = args.population // 2
        linas = LINAS | {
            "initial": args.population,
            "batch": args.population,
            "inner_evals": args.inner_evals,
        }
        settings = SearchSettings(strategy=strategy, seed=seed, **sizes)
        start, scored0, looked0 = time.perf_counter(), cache.scored, cache.looked_up
        print(f"[front_evidence] {supernet}/{name}: start", flush=True)
        search = Search(
            space,
            cost,
            Constraints(),
            FullFitness(cache, split_images),
            settings,
            state_path=run_dir / "search_state.json",
            context={"supernet": supernet, **scored_with},
            objectives=objectives,
            linas=LinasSettings(**linas),
            scored_with=scored_with,
            evaluations_path=run_dir / "evaluations.jsonl",
        )
        result = search.run()
        wall = time.perf_counter() - start
        rows = read_evaluations(run_dir / "evaluations.jsonl")
        record = {
            "supernet": supernet,
            "run": name,
            "strategy": strategy,
            "seed": seed,
            "objectives": list(names),
            "settings": sizes | ({"linas": linas} if strategy == "linas" else {}),
            "split_images": split_images,
            "scored_with": scored_with,
            # this process's wall time (0 for a run resumed whole from the cache)
            "wall_s": round(wall, 1),
            "scored_now": cache.scored - scored0,
            "from_cache": cache.looked_up - looked0,
            "linas_loops": result.loops,
            # every evaluation in order: embed, depth, heads, mlp ratios, top-1 on the search
            # split, params, MACs, generation
            "evaluations": [
                [
                    r["arch"].embed_dim,
                    r["arch"].depth,
                    list(r["arch"].num_heads),
                    list(r["arch"].mlp_ratio),
                    r["acc"],
                    r["params"],
                    r["macs"],
                    r["generation"],
                ]
                for r in rows
            ],
        }
        write_record(records / f"{name}.json", record)
        atomic_write_json(run_dir / "done.json", {"wall_s": record["wall_s"]})
        print(
            f"[front_evidence] {supernet}/{name}: done, {len(rows)} evaluations, "
            f"{record['scored_now']} scored, {wall / 60:.1f} min",
            flush=True,
        )
    score_fronts_on_val(args, supernet, loaded, dm, fabric, table, reference, scored_with)


def score_fronts_on_val(
    args: argparse.Namespace,
    supernet: str,
    loaded: Any,
    dm: Any,
    fabric: Any,
    table: Any,
    reference: dict[str, list[float]],
    scored_with: dict[str, Any],
) -> None:
    """Every front any run had after any generation, and the reference front, scored once on
    the val split (never seen by a search): the hypervolume of search-split fronts is
    optimistic (each member is a maximum of noisy scores), the val one is not."""
    from ovo.scoring import SubnetEvaluator
    from ovo.search.objectives import Objectives

    records = args.records / supernet
    val = SubnetEvaluator(loaded.net, dm.eval_dataloader("val"), fabric, cache=True)
    cache = ScoreCache(
        args.work / supernet / "val_scores.jsonl",
        {"weights": scored_with["weights"], "split": "val", "split_images": val.num_images()},
        val,
    )
    runs = _load(args.records, supernet)
    wanted: dict[str, Any] = {}
    for names in OBJECTIVES[supernet]:
        key = "-".join(names[1:])
        if key not in reference:
            continue
        obj = Objectives(names, table if "latency" in names else None)

        def point(row: Sequence[Any], obj: Objectives = obj) -> tuple[float, ...]:
            return obj.minimised(obj.values(_row_arch(row), row[4], row[5], row[6]))

        union: dict[str, Sequence[Any]] = {}
        for r in runs:
            if r["strategy"] in ("random", "evolution") or tuple(r["objectives"]) == names:
                rows = r["evaluations"]
                for row in rows:
                    union.setdefault(json.dumps(row[:4]), row)
                for _, members in generation_fronts(rows, point):
                    for i in members:
                        wanted.setdefault(json.dumps(rows[i][:4]), rows[i])
        for _, members in generation_fronts(list(union.values()), point)[-1:]:
            rows = list(union.values())
            for i in members:
                wanted.setdefault(json.dumps(rows[i][:4]), rows[i])
    keys = list(wanted)
    archs = [_row_arch(wanted[k]) for k in keys]
    print(f"[front_evidence] {supernet}: {len(archs)} front members on val", flush=True)
    accs = cache(archs)
    atomic_write_json(
        records / "val_scores.json",
        {
            "split": "val",
            "images": val.num_images(),
            "acc1": {k: a for k, a in zip(keys, accs)},
        },
    )


def run_all(args: argparse.Namespace) -> None:
    jobs = []
    for supernet in ("quickstart", "nano"):
        ckpt = getattr(args, supernet)
        if ckpt is None:
            continue
        argv = [
            "nice",
            "-n",
            str(args.nice),
            sys.executable,
            __file__,
            "--worker",
            supernet,
            "--ckpt",
            str(ckpt),
            "--work",
            str(args.work),
            "--records",
            str(args.records),
            "--population",
            str(args.population),
            "--generations",
            str(args.generations),
            "--inner-evals",
            str(args.inner_evals),
        ]
        if supernet == "nano" and args.table:
            argv += ["--table", str(args.table)]
        tag = "-latency" if supernet == "nano" and args.table else ""
        jobs.append(Job(f"{supernet}{tag}", tuple(argv), args.work / f"{supernet}{tag}"))
    Pool(1, tag="front_evidence").run(jobs)
    report(args)


# ---- report -------------------------------------------------------------------------------------
def mean_se(values: Sequence[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return m, se


def _load(records: Path, supernet: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((records / supernet).glob("*-seed*.json"))]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def curve(points: Iterable[tuple[float, ...]]) -> list[float]:
    """The hypervolume (unit reference point) of the first n points, for every n: the points
    are normalised and minimised (see :meth:`Objectives.normalised`)."""
    from ovo.search.moo import hypervolume

    out: list[float] = []
    front: list[tuple[float, ...]] = []
    hv = 0.0
    for p in points:
        if not any(_dominates(q, p) or q == p for q in front):
            front = [q for q in front if not _dominates(p, q)] + [p]
            hv = hypervolume(front, (1.0,) * len(p))
        out.append(hv)
    return out


def generation_fronts(rows: Sequence[Sequence[Any]], point: Any) -> list[tuple[int, list[int]]]:
    """``(evaluations so far, indices of the front's members)`` after each generation of a
    run's evaluations (rows in order; ``point`` maps a row to its minimised objectives)."""
    from ovo.search.moo import nondominated

    out = []
    points = [point(r) for r in rows]
    for g in sorted({r[7] for r in rows}):
        upto = [i for i, r in enumerate(rows) if r[7] <= g]
        out.append((len(upto), [upto[i] for i in nondominated([points[i] for i in upto])]))
    return out


def first_reaching(values: Sequence[float], target: float) -> int | None:
    """The number of evaluations after which ``values`` first reaches ``target`` (None: never)."""
    return next((i + 1 for i, v in enumerate(values) if v >= target - 1e-12), None)


def _row_arch(row: Sequence[Any]) -> Any:
    from ovo.space import Arch

    return Arch(row[0], tuple(row[2]), tuple(float(r) for r in row[3]))


def _floor(value: str, runs: list[dict[str, Any]]) -> float:
    if value != "random-min":
        return float(value)
    return math.floor(
        min(row[4] for r in runs if r["strategy"] == "random" for row in r["evaluations"])
    )


def _fmt(m: float, se: float, digits: int = 4) -> str:
    return f"{m:.{digits}f} ± {se:.{digits}f}" if math.isfinite(se) else f"{m:.{digits}f}"


def report(args: argparse.Namespace) -> dict[str, Any]:
    """Every table of the docs page, from the committed records (``--records``)."""
    from ovo.latency import load_table
    from ovo.ranking.stats import kendall_tau_b
    from ovo.search.encoding import ArchEncoding
    from ovo.search.linas import fit_predictor
    from ovo.search.objectives import Objectives
    from ovo.space import SearchSpace

    out: dict[str, Any] = {}
    for supernet, objective_sets in OBJECTIVES.items():
        meta_file = args.records / supernet / "supernet.json"
        runs = _load(args.records, supernet)
        if not runs or not meta_file.is_file():
            continue
        meta = json.loads(meta_file.read_text())
        space = SearchSpace.from_dict(meta["space"])
        section: dict[str, Any] = {"split_images": meta["split_images"], "objectives": {}}
        for names in objective_sets:
            key = "-".join(names[1:])
            if key not in meta["reference"]:
                continue
            # the committed copy beside the records, else where the worker read it
            committed = args.records / supernet / "latency_table.json"
            table_path = committed if committed.is_file() else meta["latency_table"]
            table = load_table(table_path) if "latency" in names else None
            obj = Objectives(names, table)
            reference = list(meta["reference"][key])
            if args.acc_floor is not None:  # a sensitivity check of the space's floor (0 %)
                reference[0] = _floor(args.acc_floor, runs)
            used = [
                r
                for r in runs
                if r["strategy"] in ("random", "evolution") or tuple(r["objectives"]) == names
            ]
            if not any(r["strategy"] in ("nsga2", "linas") for r in used):
                continue

            def point(
                row: Sequence[Any], obj: Objectives = obj, reference: list = reference
            ) -> tuple[float, ...]:
                values = obj.values(_row_arch(row), row[4], row[5], row[6])
                return obj.normalised(values, reference)

            union: dict[str, tuple[float, ...]] = {}
            for r in used:
                for row in r["evaluations"]:
                    union.setdefault(json.dumps(row[:4]), point(row))
            reference_hv = curve(union.values())[-1]
            curves: dict[str, dict[int, list[float]]] = {}
            for r in used:
                if r["seed"] == REFERENCE_SEED:
                    continue
                c = [v / reference_hv for v in curve(point(row) for row in r["evaluations"])]
                curves.setdefault(r["strategy"], {})[r["seed"]] = c
            strategies = [s for s in STRATEGIES if s in curves]
            length = min(len(c) for v in curves.values() for c in v.values())
            marks = sorted({n for n in CHECKPOINTS if n <= length} | {length})
            hv_table = {
                s: {n: mean_se([c[n - 1] for c in curves[s].values()]) for n in marks}
                for s in strategies
            }
            reach = {
                s: {t: [first_reaching(c, t) for c in curves[s].values()] for t in THRESHOLDS}
                for s in strategies
            }
            needed = None
            if {"nsga2", "linas"} <= set(curves):
                target = hv_table["nsga2"][length][0]
                needed = [first_reaching(c, target) for c in curves["linas"].values()]
            verdicts = targets(hv_table, needed, length)
            section["objectives"][key] = {
                "reference_point": reference,
                "reference_archs": len(union),
                "reference_hv": reference_hv,
                "evaluations_per_run": length,
                "seeds": {s: sorted(curves[s]) for s in strategies},
                "hv": {s: {n: list(v) for n, v in t.items()} for s, t in hv_table.items()},
                "evaluations_to": {s: {str(t): v for t, v in r.items()} for s, r in reach.items()},
                "verdicts": verdicts,
            }
            val_file = args.records / supernet / "val_scores.json"
            if val_file.is_file():
                section["objectives"][key]["val"] = val_report(
                    json.loads(val_file.read_text()), used, obj, reference, length
                )
        section["linas_loops"] = {
            r["run"]: [
                {k: loop.get(k) for k in ("loop", "predictor", "kendall_tau", "mape", "cv_mae")}
                for loop in r["linas_loops"]
            ]
            for r in runs
            if r["strategy"] == "linas"
        }
        section["scored"] = {
            "runs": len(runs),
            "evaluations": sum(len(r["evaluations"]) for r in runs),
            "scored_by_the_worker": sum(r["scored_now"] for r in runs),
        }
        ranked_file = args.records / supernet / "ranked16.json"
        if ranked_file.is_file() and RANKED.is_file():
            section["ranked16"] = ranked16(
                json.loads(ranked_file.read_text()),
                runs,
                space,
                kendall_tau_b,
                ArchEncoding,
                fit_predictor,
            )
        out[supernet] = section
    return out


def targets(
    table: dict[str, dict[int, Any]], needed: list[int | None] | None, length: int
) -> dict[str, Any]:
    """The issue's targets at ``length`` evaluations: the evaluations LINAS needed (``needed``,
    per seed) to reach NSGA-II's mean hypervolume, and NSGA-II against random search."""
    out: dict[str, Any] = {}
    if needed is not None:
        # None: a seed never reached it within the run
        ratio = None if None in needed else statistics.fmean(n / length for n in needed)
        out["linas_to_nsga2_final"] = {
            "evaluations_per_run": length,
            "nsga2_hv": table["nsga2"][length][0],
            "linas_evaluations": needed,
            "ratio_mean": ratio,
            "met_0.40": ratio is not None and ratio <= 0.40,
            "met_0.35": ratio is not None and ratio <= 0.35,
        }
    if "nsga2" in table and "random" in table:
        (mn, sn), (mr, sr) = table["nsga2"][length], table["random"][length]
        se = math.sqrt(sn**2 + sr**2)
        out["nsga2_vs_random_final"] = {
            "difference": mn - mr,
            "se_of_difference": se,
            "met_2se": (mn - mr) > 2 * se,
        }
    return out


def val_report(
    val: dict[str, Any],
    runs: list[dict[str, Any]],
    obj: Any,
    reference: Sequence[float],
    length: int,
) -> dict[str, Any]:
    """The hypervolume of each run's front after each generation with its members' val top-1
    (members still chosen by search-split accuracy), normalised by the reference front's."""
    from ovo.search.moo import hypervolume

    acc = val["acc1"]

    def minimised(row: Sequence[Any]) -> tuple[float, ...]:
        return obj.minimised(obj.values(_row_arch(row), row[4], row[5], row[6]))

    def hv(rows: Sequence[Sequence[Any]], members: list[int]) -> float:
        points = []
        for i in members:
            values = obj.values(_row_arch(rows[i]), acc[json.dumps(rows[i][:4])], *rows[i][5:7])
            points.append(obj.normalised(values, reference))
        return hypervolume(points, (1.0,) * len(reference))

    union: dict[str, Sequence[Any]] = {}
    for r in runs:
        for row in r["evaluations"]:
            union.setdefault(json.dumps(row[:4]), row)
    rows = list(union.values())
    reference_hv = hv(rows, generation_fronts(rows, minimised)[-1][1])
    curves: dict[str, dict[int, dict[int, float]]] = {}
    for r in runs:
        if r["seed"] == REFERENCE_SEED:
            continue
        fronts = generation_fronts(r["evaluations"], minimised)
        curves.setdefault(r["strategy"], {})[r["seed"]] = {
            n: hv(r["evaluations"], m) / reference_hv for n, m in fronts
        }
    marks = sorted(set.intersection(*(set(c) for v in curves.values() for c in v.values())))
    table = {
        s: {n: list(mean_se([c[n] for c in curves[s].values()])) for n in marks}
        for s in STRATEGIES
        if s in curves
    }
    needed = None
    if {"nsga2", "linas"} <= set(curves) and length in marks:
        target = table["nsga2"][length][0]
        needed = [
            next((n for n in marks if c[n] >= target - 1e-12), None)
            for c in curves["linas"].values()
        ]
    verdicts = targets(table, needed, length) if length in marks else {}
    return {
        "split": val["split"],
        "images": val["images"],
        "reference_hv": reference_hv,
        "hv": table,
        "verdicts": verdicts,
    }


def ranked16(
    ranked: dict[str, Any],
    runs: list[dict[str, Any]],
    space: Any,
    tau: Any,
    encoding: Any,
    fit: Any,
) -> dict[str, Any]:
    """The predictor's ranking of the 16 archs of docs/rank_cifar10/ against their two-seed
    standalone truth, beside the inherited (raw search-split) ranking's."""
    from ovo.space import Arch

    truth_rows = json.loads(RANKED.read_text())
    by_arch: dict[str, list[float]] = {}
    for row in truth_rows:
        by_arch.setdefault(json.dumps(row["arch"], sort_keys=True), []).append(row["acc1"])
    archs = [Arch.from_dict(a) for a in ranked["archs"]]
    keys = [json.dumps(a, sort_keys=True) for a in ranked["archs"]]
    truth = [statistics.fmean(by_arch[k]) for k in keys]
    enc = encoding(space)
    codes16 = enc.encode_all(archs)
    out: dict[str, Any] = {
        "n": len(archs),
        "seeds_per_arch": sorted({len(v) for v in by_arch.values()}),
        "tau_inherited_search_split": tau(ranked["inherited_search_acc1"], truth),
        "predictor": {},
    }

    def fitted(rows: list[Sequence[Any]], name: str, kind: str = "auto") -> None:
        seen: dict[str, Sequence[Any]] = {}
        for row in rows:
            seen.setdefault(json.dumps(row[:4]), row)
        codes = enc.encode_all([_row_arch(r) for r in seen.values()])
        model = fit(codes, [r[4] for r in seen.values()], kind, 0)
        predicted = model.predict(codes16)
        out["predictor"][name] = {
            "fitted_on": len(seen),
            "chosen": model.name,
            "tau_vs_truth": tau(predicted, truth),
            "tau_vs_inherited": tau(predicted, ranked["inherited_search_acc1"]),
        }

    for r in runs:
        if r["strategy"] == "linas" and tuple(r["objectives"]) == ("acc", "params"):
            fitted(r["evaluations"], r["run"])
    # every score of the supernet (thousands): a GP is cubic in them, so ridge and SVR only
    everything = [row for r in runs for row in r["evaluations"]]
    for kind in ("ridge", "svr"):
        fitted(everything, f"all_evaluations_{kind}", kind)
    return out


def markdown(rep: dict[str, Any]) -> str:
    """The report's tables, as the docs page shows them."""
    lines: list[str] = []
    for supernet, section in rep.items():
        for key, o in section["objectives"].items():
            lines += [
                f"### {supernet}, [acc,{key}]",
                "",
                f"Reference front: {o['reference_archs']} distinct archs, HV {o['reference_hv']:.4f} "
                f"(reference point {o['reference_point']}). Seeds: "
                + ", ".join(f"{s} {v}" for s, v in o["seeds"].items()),
                "",
                "| evaluations | images scored | " + " | ".join(o["hv"]) + " |",
                "|---|---|" + "---|" * len(o["hv"]),
            ]
            for n in next(iter(o["hv"].values())):
                cells = [_fmt(*o["hv"][s][n]) for s in o["hv"]]
                lines.append(
                    f"| {n} | {n * section['split_images']:,} | " + " | ".join(cells) + " |"
                )
            lines += [
                "",
                "| evaluations to reach | " + " | ".join(o["hv"]) + " |",
                "|---|" + "---|" * len(o["hv"]),
            ]
            rep_len = o["evaluations_per_run"]
            for t in THRESHOLDS:
                cells = [
                    ", ".join(
                        f">{rep_len}" if v is None else str(v)
                        for v in o["evaluations_to"][s][str(t)]
                    )
                    for s in o["hv"]
                ]
                lines.append(f"| {t:.2f} of the reference | " + " | ".join(cells) + " |")
            lines += ["", "```json", json.dumps(o["verdicts"], indent=1), "```", ""]
            if "val" in o:
                v = o["val"]
                lines += [
                    f"Fronts after each generation, members' top-1 on {v['split']} "
                    f"({v['images']:,} images); reference front's val HV {v['reference_hv']:.4f}:",
                    "",
                    "| evaluations | " + " | ".join(v["hv"]) + " |",
                    "|---|" + "---|" * len(v["hv"]),
                ]
                for n in next(iter(v["hv"].values())):
                    lines.append(
                        f"| {n} | " + " | ".join(_fmt(*v["hv"][s][n]) for s in v["hv"]) + " |"
                    )
                lines += ["", "```json", json.dumps(v["verdicts"], indent=1), "```", ""]
        if section.get("linas_loops"):
            lines += [
                "| linas run | " + " | ".join(f"loop {i}" for i in range(1, 10)) + " |",
                "|---|" + "---|" * 9,
            ]
            for run, loops in section["linas_loops"].items():
                cells = [
                    "-"
                    if lp["kendall_tau"] is None
                    else f"{lp['kendall_tau']:.2f} ({lp['predictor']})"
                    for lp in loops
                    if lp["loop"] >= 1
                ]
                lines.append(f"| {run} | " + " | ".join(cells) + " |")
            lines.append("")
        if section.get("ranked16"):
            lines += ["```json", json.dumps(section["ranked16"], indent=1), "```", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
    elif args.report:
        rep = report(args)
        name = "report.json" if args.acc_floor is None else f"report_floor_{args.acc_floor}.json"
        atomic_write_json(args.records / name, rep)
        print(markdown(rep))
    else:
        run_all(args)


if __name__ == "__main__":
    main()
