"""The ensemble's prior weights at budget 0, and what its learned weights reach with every pool point labeled.

    .venv/bin/python scripts/measure_ensemble_prior.py --data-root ../shared/data [--seed 0]

On BENCHMARKS.md's label-efficiency subsets (``app/bench/plan.py``, ``LABEL_SUBSETS``; train/test sets fitted on
train ∪ pool as the bench plan runs them), the default members are fitted once per series and their normalised
window scores ``Z`` pooled offline (``pooled``), so each weighting costs a sort, not a fit. PR-AUC on the evaluation
part, mean over the series of a set. Printed as Markdown:

1. each member alone, equal weights, ``DEFAULT_PRIOR_WEIGHTS`` (and without each member in turn) and the grid's
   best weightings;
2. leave one set out: the grid's best on the other five sets, read on the held-out one, against equal weights;
3. an upper bound on what re-weighting can learn: the weights learned (``learn_weights``, from the default prior)
   with **every** pool window labeled, for a few strengths — what the labels could teach at 100 % answers;
4. the same bound for a supervised learner on the ensemble's label features (``window_features``: the members'
   scores and the point scorers' per-channel summaries, the residual's inputs): scikit-learn's gradient-boosted
   trees and a balanced logistic regression trained on **every** pool window, read on the evaluation part — what
   any learner of these features could reach, whatever the budget.

5. with ``--false-alarms`` only: the false-alarm exemplars (the ensemble's step 7) against none, the answers
   simulated as one top-k round of the prior (the highest-scoring pool windows, none overlapping, 1 % and 5 % of the
   pool's windows, each answered by the bench's ground-truth oracle), learned by the ensemble's own ``feedback``;
   ``--views shape,level,auto`` adds an arm per ``exemplar_view`` (default: ``auto`` alone).

``--cap NAMES`` / ``--extrapolate NAMES`` override which members' tail units stop at the fit maximum
(``Detector.extrapolates_tail``; the ensemble's module docstring, step 2, quotes these arms), and ``--prior-only``
prints the first section's single members, equal weights and the default only. No timing is read from it.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from app.bench.data import discover, load
from app.bench.plan import LABEL_SUBSETS
from app.bench.protocol import ProtocolConfig, make_split
from app.core.detectors.ensemble import DEFAULT_PRIOR_WEIGHTS, EnsembleDetector, learn_weights, pooled
from app.core.detectors.registry import detector_class
from app.core.metrics import pr_auc
from app.core.windows import end_point_scores, window_ends

SETS = ("nab", "kpi", "skab", "smd", "asd", "smap")
PAIRED = ("smd", "asd", "smap")  # train/test files: fitted on train ∪ pool, as `bench plan` runs them
GRID = {
    "diff": (0.5, 1.0),
    "rollingz": (0.1, 0.3, 1.0),
    "level": (0.3, 1.0),
    "iforest": (1.0, 2.0, 4.0, 8.0),
    "knn": (1.0, 2.0, 4.0),
}


class Series:
    """One series' normalised member scores ``Z`` ``(n_windows, M)`` and what scoring them needs."""

    def __init__(
        self, Z: np.ndarray, y: np.ndarray, evaluation: tuple[int, int], window: int, stride: int, F: np.ndarray
    ) -> None:
        self.Z, self.y, self.evaluation, self.window, self.stride = Z, y, evaluation, window, stride
        self.F = F  # the label features of every window (EnsembleDetector.window_features), (n_windows, k)
        self.detector: EnsembleDetector | None = None  # kept for --false-alarms: the fitted ensemble and its series
        self.X: np.ndarray | None = None
        self.pool: tuple[int, int] = (0, evaluation[0])

    def pr_auc_of(self, window_scores: np.ndarray) -> float:
        a, b = self.evaluation
        points = end_point_scores(window_scores, len(self.y), self.window, self.stride)
        return pr_auc(points[a:b], self.y[a:b])

    def pool_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices and 0/1 labels of every window whose end point lies in the pool (before the evaluation part)."""
        ends = window_ends(len(self.y), self.window, self.stride)
        idx = np.flatnonzero(ends < self.evaluation[0])
        return idx, self.y[ends[idx]].astype(np.int8)


def load_sets(root: Path, seed: int, keep: bool = False) -> tuple[dict[str, list[Series]], list[str]]:
    data: dict[str, list[Series]] = {}
    names: list[str] = []
    for ds in SETS:
        wanted = set(LABEL_SUBSETS[ds])
        data[ds] = []
        for files in discover(root / ds):
            if files.key.split("/")[-1] not in wanted:
                continue
            split = make_split(load(files), ProtocolConfig(fit_with_pool=ds in PAIRED))
            if split is None:
                continue
            det = EnsembleDetector(seed=seed, device="cpu").fit(split.X_fit)
            names = det.member_names_
            Z = det.member_window_scores(split.X)
            F = det.window_features(split.X)
            series = Series(Z, split.y.astype(int), split.evaluation, det.window, det.stride, F)
            if keep:
                series.detector, series.X, series.pool = det, split.X, split.pool
            data[ds].append(series)
    return data, names


def per_set(data: dict[str, list[Series]], score) -> dict[str, float]:
    return {ds: float(np.mean([s.pr_auc_of(score(s)) for s in series])) for ds, series in data.items()}


def weights_of(names: list[str], given: Mapping[str, float]) -> np.ndarray:
    """The simplex weights the ensemble itself would make of ``given`` (``EnsembleDetector.prior_weights_for``)."""
    return EnsembleDetector(members=tuple(names), prior_weights=dict(given)).prior_weights_for(names)


def row(label: str, figures: dict[str, float]) -> str:
    cells = " | ".join(f"{figures[ds]:.3f}" for ds in SETS)
    return f"| {label} | {cells} | {np.mean(list(figures.values())):.3f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cap", default="", help="members whose tail units stop at the fit maximum, comma-separated")
    ap.add_argument("--extrapolate", default="", help="members whose tail units keep growing, comma-separated")
    ap.add_argument("--prior-only", action="store_true", help="members alone, equal weights and the default only")
    ap.add_argument("--false-alarms", action="store_true", help="section 5 only: false-alarm exemplars or none")
    ap.add_argument("--views", default="auto", help="with --false-alarms: exemplar_view arms, comma-separated")
    args = ap.parse_args()
    for names_arg, extrapolates in ((args.cap, False), (args.extrapolate, True)):
        for name in filter(None, names_arg.split(",")):
            detector_class(name).extrapolates_tail = extrapolates  # this process only: an arm of the measurement
    data, names = load_sets(Path(args.data_root), args.seed, keep=args.false_alarms)
    if args.false_alarms:
        print("### One top-k round of answers: false-alarm exemplars (step 7) or none\n")
        print("| answers, exemplars | " + " | ".join(SETS) + " | mean |\n|---|" + "---|" * (len(SETS) + 1))
        print(row("none (the prior)", per_set(data, lambda s: pooled(s.Z, weights_of(names, DEFAULT_PRIOR_WEIGHTS)))))
        arms = [(0.0, "auto")] + [(10.0, view) for view in args.views.split(",")]
        for budget in (0.01, 0.05):
            for suppress, view in arms:
                figures = per_set(data, lambda s, b=budget, k=suppress, v=view: after_top_k(s, b, k, v))
                print(row(f"{budget:.0%} top-k, suppress {suppress:g}" + (f", {view}" if suppress else ""), figures))
        return
    header = f"| weighting ({', '.join(names)}) | " + " | ".join(SETS) + " | mean |\n|---|" + "---|" * (len(SETS) + 1)

    print("### Budget 0: members alone and prior weightings\n")
    print(header)
    for j, name in enumerate(names):
        print(row(f"{name} alone", per_set(data, lambda s, j=j: s.Z[:, j])))
    equal = per_set(data, lambda s: pooled(s.Z, np.full(len(names), 1 / len(names))))
    print(row("equal", equal))
    default = weights_of(names, DEFAULT_PRIOR_WEIGHTS)
    label = f"DEFAULT_PRIOR_WEIGHTS {tuple(float(w) for w in np.round(default, 3))}"
    print(row(label, per_set(data, lambda s: pooled(s.Z, default))))
    if args.prior_only:
        return
    for j, name in enumerate(names):  # what each member adds to the default prior
        rest = [i for i in range(len(names)) if i != j]
        w = default[rest] / default[rest].sum()
        figures = per_set(data, lambda s, rest=rest, w=w: pooled(s.Z[:, rest], w))
        print(row(f"DEFAULT_PRIOR_WEIGHTS without {name}", figures))
    grid = []
    for combo in itertools.product(*(GRID[n] for n in names)):
        w = weights_of(names, dict(zip(names, combo, strict=True)))
        grid.append((combo, per_set(data, lambda s, w=w: pooled(s.Z, w))))
    grid.sort(key=lambda g: -np.mean(list(g[1].values())))
    for combo, figures in grid[:5]:
        print(row(f"grid {combo}", figures))

    print(f"\n### Leave one set out ({len(grid)} weightings)\n")
    print("| held-out set | best on the other five | held-out PR-AUC | equal weights |\n|---|---|---|---|")
    for held in SETS:
        combo, figures = max(grid, key=lambda g: np.mean([v for ds, v in g[1].items() if ds != held]))
        print(f"| {held} | {combo} | {figures[held]:.3f} | {equal[held]:.3f} |")

    print("\n### Every pool window labeled: the learned weights (hmp, logistic, from the default prior)\n")
    print(header)
    for strength in (0.3, 1.0, 3.0):

        def learned(s: Series, strength: float = strength) -> np.ndarray:
            idx, y = s.pool_windows()
            if y.min() == y.max():
                return pooled(s.Z, default)
            w, _ = learn_weights(s.Z[idx], y, np.full(len(idx), s.stride / s.window), strength=strength, prior=default)
            return pooled(s.Z, w)

        print(row(f"strength {strength:g}", per_set(data, learned)))

    print("\n### Every pool window labeled: supervised learners on the label features\n")
    print(header.replace(f"weighting ({', '.join(names)})", "learner"))
    print(row("prior (no labels)", per_set(data, lambda s: pooled(s.Z, default))))
    for label, learner in supervised_learners(args.seed).items():
        print(row(label, per_set(data, lambda s, learner=learner: supervised(s, learner, default))))


def after_top_k(s: Series, budget: float, suppress: float, view: str = "auto") -> np.ndarray:
    """The ensemble's window scores after one round of ground-truth answers to the prior's top ``budget`` share of
    the pool's windows (none overlapping), learned with ``suppress`` (0: no false-alarm exemplars) and the exemplars
    compared under ``view`` (the ensemble's ``exemplar_view``)."""
    import copy

    from app.core.loop import GroundTruthOracle
    from app.core.windows import window_starts

    assert s.detector is not None and s.X is not None
    det = copy.deepcopy(s.detector)  # the members' cached scores come along: no member runs again
    det.suppress, det.exemplar_view = suppress, view
    starts = window_starts(len(s.y), s.window, s.stride)
    inside = np.flatnonzero((starts >= s.pool[0]) & (starts + s.window <= s.pool[1]))
    prior = det.window_scores(s.X)
    wanted = max(1, round(budget * len(inside)))
    oracle = GroundTruthOracle(s.y, s.pool)
    ranges, taken = [], []
    for i in inside[np.argsort(-prior[inside], kind="stable")]:
        if len(taken) == wanted:
            break
        if all(abs(starts[i] - t) >= s.window for t in taken):
            taken.append(int(starts[i]))
            ranges += oracle(int(starts[i]), int(starts[i]) + s.window)
    det.feedback(s.X, ranges)
    return det.window_scores(s.X)


def supervised_learners(seed: int) -> dict[str, object]:
    """The learners of section 4, unfitted (scikit-learn estimators; features standardised on the series)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    return {
        "gradient-boosted trees": HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.05, class_weight="balanced", random_state=seed
        ),
        "logistic regression (C=1)": LogisticRegression(C=1.0, class_weight="balanced", max_iter=500),
    }


def supervised(s: Series, learner, default: np.ndarray) -> np.ndarray:
    """Window scores of ``learner`` fitted on every pool window's ground truth; the prior where the pool holds one
    class (nothing to learn)."""
    from sklearn.base import clone

    idx, y = s.pool_windows()
    if y.min() == y.max():
        return pooled(s.Z, default)
    mu, sd = s.F.mean(axis=0), s.F.std(axis=0)
    F = (s.F - mu) / np.where(sd > 1e-9, sd, 1.0)
    model = clone(learner).fit(F[idx], y)
    return model.predict_proba(F)[:, 1]


if __name__ == "__main__":
    main()
