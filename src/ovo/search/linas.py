"""LINAS (``strategy=linas``): NSGA-II on a predictor of accuracy, real scores only in batches.

Generation 0 scores ``linas.initial`` random archs. Every later generation is one loop:

1. fit a predictor of accuracy from the arch encoding (:class:`ArchEncoding`) on every arch
   scored so far: ``linas.predictor`` = ``ridge`` (alpha 0.1, 1, 10), ``svr`` (RBF, C 1, 10,
   100, on standardised accuracy), ``gp`` (a Gaussian process, constant x RBF + white noise,
   its hyperparameters by marginal likelihood) or ``auto`` (all of them); the candidate with the
   least mean absolute error in k-fold cross-validation (k = min(5, scored); ties: the earlier
   in that list) is refitted on all scores. Below 4 scores there is nothing to cross-validate:
   ridge with alpha 1 (or the first candidate of the asked family);
2. run an inner NSGA-II (:mod:`ovo.search.nsga2`'s selection and breeding, ``population``
   members) on predicted accuracy and the exact costs, started from the best ``population`` real
   scores, for ``linas.inner_evals`` predicted evaluations;
3. spend exactly ``linas.batch`` real evaluations: the best ``linas.batch`` archs the inner
   search predicted and nobody scored, in NSGA-II's order, topped up with random new archs if it
   found fewer (only a space or budget with fewer unscored archs than that gives fewer).

Fitting and the inner search draw from a ``random.Random`` derived from (seed, loop) and the
cross-validation folds from the same seed, so they are deterministic functions of (seed, loop,
scores so far): every DDP rank proposes the same archs. Each loop records the predictor it chose
and, once its batch is scored, the Kendall tau and MAPE of that fit's predictions against the
batch's real scores (predictions made before the refit on them); the records are part of the
saved state, ``results.json`` (``linas.loops``) and W&B.
"""

from __future__ import annotations

import hashlib
import math
import random
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ovo.errors import ConfigError
from ovo.search.encoding import ArchEncoding
from ovo.search.nsga2 import NSGA2Proposal, Parent, breed, select
from ovo.search.objectives import Objectives
from ovo.settings import settings_dict, settings_from
from ovo.space import Arch

if TYPE_CHECKING:
    from ovo.search.loop import Search, SearchSettings
    from ovo.search.result import EvaluatedArch

PREDICTORS = ("ridge", "svr", "gp")
MIN_CV = 4  # scores below which a predictor is not cross-validated


@dataclass(frozen=True)
class LinasSettings:
    """The ``linas`` settings of ``conf/search.yaml`` (see the module docstring)."""

    initial: int = 50
    batch: int = 50
    inner_evals: int = 5000
    predictor: Literal["auto", "ridge", "svr", "gp"] = "auto"

    def __post_init__(self) -> None:
        if self.initial < 2:
            raise ConfigError(
                f"linas.initial={self.initial} must be at least 2 (a predictor needs scores)"
            )
        for name in ("batch", "inner_evals"):
            if getattr(self, name) < 1:
                raise ConfigError(f"linas.{name}={getattr(self, name)} must be at least 1")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> LinasSettings:
        return settings_from(cls, data, "linas")


def loop_seed(seed: int, loop: int) -> int:
    """A 32-bit seed derived from (search seed, loop): the same on every rank and platform."""
    digest = hashlib.sha256(f"ovo.search.linas:{seed}:{loop}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _candidates(kind: str, seed: int) -> list[tuple[str, Any]]:
    # sklearn: imported here, only LINAS needs it
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    if kind == "ridge":
        return [(f"ridge(alpha={a:g})", Ridge(alpha=a)) for a in (0.1, 1.0, 10.0)]
    if kind == "svr":
        return [
            (
                f"svr(C={c:g})",
                TransformedTargetRegressor(SVR(C=c), transformer=StandardScaler()),
            )
            for c in (1.0, 10.0, 100.0)
        ]
    kernel = ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(0.1)
    return [("gp", GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed))]


@dataclass(frozen=True)
class FittedPredictor:
    """A predictor of accuracy fitted on every score so far, and how it was chosen."""

    name: str
    cv_mae: float | None  # its cross-validated mean absolute error (None: not cross-validated)
    model: Any = field(compare=False, repr=False)

    def predict(self, codes: Sequence[Sequence[float]]) -> list[float]:
        if not codes:
            return []
        return [float(v) for v in self.model.predict(list(codes))]


def one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread: LINAS's matrices are small (a multi-threaded
    BLAS on a shared 2-core CPU ran the GP 40x slower here), and a fixed order of float sums keeps
    every rank's fit and predictions identical."""
    from threadpoolctl import threadpool_limits  # scikit-learn's; here as sklearn is

    return threadpool_limits(limits=1)


def fit_predictor(
    codes: Sequence[Sequence[float]], scores: Sequence[float], kind: str, seed: int
) -> FittedPredictor:
    """The predictor of ``kind`` (``auto``: any) chosen by cross-validation (module docstring),
    refitted on all of ``codes -> scores``."""
    with one_blas_thread():
        return _fit(codes, scores, kind, seed)


def _fit(
    codes: Sequence[Sequence[float]], scores: Sequence[float], kind: str, seed: int
) -> FittedPredictor:
    from sklearn.base import clone  # here: scikit-learn is slow to import, only LINAS needs it
    from sklearn.model_selection import KFold, cross_val_score

    kinds = PREDICTORS if kind == "auto" else (kind,)
    candidates = [c for k in kinds for c in _candidates(k, seed)]
    x, y = [list(c) for c in codes], [float(s) for s in scores]
    with warnings.catch_warnings():
        # GP hyperparameters at a bound, ill-conditioned folds: the CV score says how good
        warnings.simplefilter("ignore")
        if len(y) < MIN_CV:
            name, model = next((c for c in candidates if c[0] == "ridge(alpha=1)"), candidates[0])
            return FittedPredictor(name, None, clone(model).fit(x, y))
        folds = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=seed)
        scored = []
        for index, (name, model) in enumerate(candidates):
            mae = -float(
                cross_val_score(
                    clone(model), x, y, cv=folds, scoring="neg_mean_absolute_error"
                ).mean()
            )
            scored.append((mae if math.isfinite(mae) else math.inf, index, name, model))
        mae, _, name, model = min(scored, key=lambda s: (s[0], s[1]))
        return FittedPredictor(name, mae if math.isfinite(mae) else None, clone(model).fit(x, y))


def prediction_quality(
    predicted: Sequence[float], real: Sequence[float]
) -> tuple[float | None, float | None]:
    """``(Kendall tau, MAPE %)`` of predictions against real scores (``None`` where undefined:
    fewer than two pairs, constant values; MAPE over the real scores that are not 0)."""
    tau = None
    if len(real) >= 2:
        from scipy.stats import kendalltau  # here, as scikit-learn (its dependency)

        value = float(kendalltau(predicted, real).statistic)
        tau = value if math.isfinite(value) else None
    ratios = [abs(p - r) / abs(r) for p, r in zip(predicted, real) if r != 0]
    mape = 100.0 * sum(ratios) / len(ratios) if ratios else None
    return tau, mape


class LinasProposal(NSGA2Proposal):
    """LINAS (see the module docstring); NSGA-II's selection and breeding, on predictions."""

    strategy = "linas"

    def __init__(
        self, settings: SearchSettings, objectives: Objectives, linas: LinasSettings
    ) -> None:
        super().__init__(settings, objectives)
        self.linas = linas
        self.restore(None)

    def hyper(self) -> dict[str, Any]:
        return {**super().hyper(), "linas": settings_dict(self.linas)}

    def initial_size(self, search: Search) -> int:
        return self.linas.initial

    # ---- state ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "pending": [[a.to_dict(), p] for a, p in self._pending.items()],
            "loops": [dict(r) for r in self._loops],
        }

    def restore(self, state: Mapping[str, Any] | None) -> None:
        state = state or {}
        self._pending: dict[Arch, float] = {
            Arch.from_dict(a): float(p) for a, p in state.get("pending", [])
        }
        self._loops: list[dict[str, Any]] = [dict(r) for r in state.get("loops", [])]

    def log(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._loops]

    # ---- the loop -------------------------------------------------------------------------
    def observe(self, search: Search, generation: int, new: list[EvaluatedArch]) -> None:
        """Score the last fit's predictions against this loop's real scores."""
        if not self._pending:
            return
        pairs = [(self._pending[e.arch], e.fitness) for e in new if e.arch in self._pending]
        tau, mape = prediction_quality([p for p, _ in pairs], [r for _, r in pairs])
        record = next(r for r in self._loops if r["loop"] == generation)
        record.update(scored=len(pairs), kendall_tau=tau, mape=mape)
        self._pending = {}

    def propose(self, search: Search) -> list[Arch]:
        with one_blas_thread():
            return self._propose(search)

    def _propose(self, search: Search) -> list[Arch]:
        loop = search.next_generation
        seed = loop_seed(search.config.seed, loop)
        encoding = ArchEncoding(search.space)
        entries = search.scored()
        fitted = fit_predictor(
            encoding.encode_all([e.arch for e in entries]),
            [e.fitness for e in entries],
            self.linas.predictor,
            seed,
        )
        points, used = self._inner_search(search, entries, fitted, encoding, random.Random(seed))
        new = [a for a in points if a not in search.archived]
        chosen = [new[i] for i, _, _ in select([points[a][1] for a in new], self.linas.batch)]
        batch = search.fill_random(chosen, target=self.linas.batch)
        extra = batch[len(chosen) :]
        predicted = {a: points[a][0] for a in chosen}
        predicted |= dict(zip(extra, fitted.predict(encoding.encode_all(extra))))
        self._pending = {a: predicted[a] for a in batch}
        self._loops.append(
            {
                "loop": loop,
                "predictor": fitted.name,
                "cv_mae": fitted.cv_mae,
                "train": len(entries),
                "predicted_evals": used,
                "proposed": len(chosen),
                "random_fill": len(extra),
                "scored": None,
                "kendall_tau": None,
                "mape": None,
            }
        )
        return batch

    def _inner_search(
        self,
        search: Search,
        entries: list[EvaluatedArch],
        fitted: FittedPredictor,
        encoding: ArchEncoding,
        rng: random.Random,
    ) -> tuple[dict[Arch, tuple[float, tuple[float, ...]]], int]:
        """NSGA-II on predicted accuracy: every arch it predicted -> (predicted accuracy,
        minimised objectives), in the order predicted; and how many offspring it predicted."""
        objectives, cost, size = self.objectives, search.cost, self.settings.population
        points: dict[Arch, tuple[float, tuple[float, ...]]] = {}

        def predict(archs: list[Arch]) -> None:
            for arch, acc in zip(archs, fitted.predict(encoding.encode_all(archs))):
                values = objectives.values(arch, acc, cost.params(arch), cost.macs(arch))
                points[arch] = (acc, objectives.minimised(values))

        def admissible(arch: Arch, taken: set[Arch]) -> bool:
            return arch not in points and search.admissible(arch, taken)

        population = [p.arch for p in self.parents(search)]  # the best real scores
        predict(population)
        used = 0
        while used < self.linas.inner_evals:
            chosen = select([points[a][1] for a in population], len(population))
            parents = [Parent(population[i], r, c) for i, r, c in chosen]
            count = min(size, self.linas.inner_evals - used)
            children = breed(parents, count, rng, search.space, self.settings, admissible)
            if not children:
                break  # nothing new within the budget box near this population
            predict(children)
            used += len(children)
            merged = population + children
            population = [merged[i] for i, _, _ in select([points[a][1] for a in merged], size)]
        return points, used
