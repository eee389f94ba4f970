"""Safe adoption: a new model version serves only when the labels say it is not worse.

The product and the bench decide with the same function (:func:`judge`), so the bench reports the model a user
would actually be served.

**Validation labels** are the answers of the round that produced the candidate. The version serving when that round
was asked never learned from them: it was trained before they were given. The candidate's figure on them is *held
out* when its detector can hold labels out (``can_hold_out_labels``: the ensemble re-learns its combination without
them); otherwise it is *in-sample* — flattering to the candidate — and can only refuse it, never vouch for it.

**The figure** is label agreement: each validation window's score is turned into its percentile among the version's
own pool window scores (so versions with different score scales compare); an anomalous window counts ``p``, a normal
one ``1 − p``; the two classes weigh equally when both are present. 0.5 is chance; 1 puts every labeled anomaly
above, and every labeled normal below, every other window. It is defined for any mix of answers (a round of only
"normal" answers still tells whether a version stopped flagging them).

**The rule** (``policy="validate"``, the default): the candidate is refused when its mean paired difference from the
serving version is below ``-max(tolerance, one standard error)`` (worse beyond noise). **The threshold guard**: a
threshold may flag at most ``max(max_flag_share, flag_rate_factor × the pool's anomaly rate as the labels estimate
it)`` of the pool's points (a model that flags 60 % of points is an alarm storm, whatever its ranking); a candidate's
threshold that would flag more is *raised* to that limit (:func:`capped_threshold`) and the candidate is judged on its
ranking like any other. Refusing it instead kept the older version's ranking *and* its alarms: on KPI and SMAP the
guard held back candidates that ranked the evaluation part better than the serving version (BENCHMARKS.md, "The guard
caps the threshold"); capped, their ranking serves and the alarms stay within the limit. ``policy="always"`` serves
every candidate with the threshold its labels chose, and still records the figures.

**The anomaly rate** (:func:`estimated_anomaly_rate`) is not the anomalous share of the labeled points: queries go
where scores are high, so a first round of top-k answers is often a third anomalous on a series whose anomalies are
a few percent of its points, and three times that share let any alarm storm through (an LSTM-AE project on NAB's
nyc_taxi, 10 % of its points anomalous, served versions flagging 53 % and then 42 % of them: the labels were 30 %
anomalous, the limit 90 %). The labels tell how likely a point of a given score is anomalous; that, averaged over
every pool point's score, estimates the pool's rate. The scores are the serving version's, which chose the queries
(the candidate's when nothing serves yet): a candidate that scores every window high cannot raise its own allowance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

POLICIES = ("validate", "always")


@dataclass(frozen=True)
class AdoptionRule:
    """When a candidate may serve. A project setting; the defaults are the safe choice."""

    policy: str = "validate"
    """``validate`` (judge on held-back labels and the threshold guard) or ``always`` (newest serves)."""
    tolerance: float = 0.02
    """Agreement the candidate may lose before it counts as worse (0–1 scale), however many labels."""
    max_flag_share: float = 0.05
    """Share of pool points the candidate's threshold may flag (the guard), unless labels show more anomalies."""
    flag_rate_factor: float = 3.0
    """The guard allows up to this multiple of the pool's estimated anomaly rate when that is higher."""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"adoption policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1), not {self.tolerance}")
        if not 0.0 < self.max_flag_share <= 1.0:
            raise ValueError(f"max_flag_share must be in (0, 1], not {self.max_flag_share}")
        if self.flag_rate_factor < 0:
            raise ValueError(f"flag_rate_factor must be >= 0, not {self.flag_rate_factor}")


@dataclass(frozen=True)
class Verdict:
    """The decision on one candidate and the figures behind it (stored beside the version, shown on its page)."""

    serve: bool
    reason: str
    n_validation: int = 0
    n_anomalous: int = 0
    serving_figure: float | None = None
    candidate_figure: float | None = None
    held_out: bool = False
    flag_share: float = 0.0
    flag_limit: float = 1.0
    anomaly_rate: float = 0.0
    """The pool's anomalous share of points as the labels estimate it (:func:`estimated_anomaly_rate`)."""
    threshold: float | None = None
    """The threshold the candidate serves with (raised by the guard when ``raised_from`` is set)."""
    raised_from: float | None = None
    """The threshold its labels chose, when the guard raised it; ``flag_share`` is then the raised one's share."""

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def percentile_ranks(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Where each of ``values`` falls among ``reference`` scores, in [0, 1] (ties count half).

    ``values``: ``(m,)`` window scores to place; ``reference``: ``(n,)`` the same version's pool window scores."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    v = np.asarray(values, dtype=np.float64)
    if len(ref) == 0:
        return np.full(len(v), 0.5)
    below = np.searchsorted(ref, v, side="left")
    not_above = np.searchsorted(ref, v, side="right")
    return (below + not_above) / (2.0 * len(ref))


def agreement(ranks: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-window agreement ``(m,)`` (``p`` for an anomaly, ``1 − p`` for a normal) and class-balancing weights
    ``(m,)`` summing to 1. ``labels``: ``(m,)`` 0/1 window labels."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(ranks, dtype=np.float64)
    values = np.where(y, p, 1.0 - p)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    both = n_pos > 0 and n_neg > 0
    weights = np.where(y, 0.5 / max(1, n_pos), 0.5 / max(1, n_neg)) if both else np.full(len(y), 1 / max(1, len(y)))
    return values, weights


def estimated_anomaly_rate(pool_scores: np.ndarray, point_labels: np.ndarray) -> float:
    """The pool's anomalous share of points, estimated from its labeled points without the queries' bias.

    ``pool_scores``: ``(n,)`` a version's point scores of the pool; ``point_labels``: ``(n,)`` -1 (unlabeled), 0 or
    1. The chance that a point is anomalous given its score (:func:`app.core.thresholds.anomaly_chance`: isotonic
    regression on the labeled points), averaged over every pool point. Unbiased when which points were asked about
    depends on their scores only (the queries follow a version's ranking); with no label it is 0, with labels of one
    class that class's 0 or 1."""
    from app.core.thresholds import anomaly_chance

    return float(np.mean(anomaly_chance(np.asarray(pool_scores, dtype=np.float64), np.asarray(point_labels))))


def flag_limit(rule: AdoptionRule, anomaly_rate: float) -> float:
    """Largest share of pool points a candidate's threshold may flag, given the pool's estimated anomaly rate."""
    return min(1.0, max(rule.max_flag_share, rule.flag_rate_factor * max(0.0, anomaly_rate)))


def capped_threshold(threshold: float, pool_points: np.ndarray, limit: float) -> float:
    """``threshold``, raised if need be so that at most ``limit`` (a share) of ``pool_points`` ``(n,)`` are flagged —
    a point is flagged when its score is at or above the threshold, as everywhere in the product. Never lowered. The
    raised threshold lies halfway between the highest point that must not be flagged and the next higher score, so no
    point sits on it; ties are never split, so it may flag fewer than the limit allows."""
    s = np.sort(np.asarray(pool_points, dtype=np.float64))
    allowed = int(np.floor(limit * len(s) + 1e-9))
    if len(s) - np.searchsorted(s, threshold, side="left") <= allowed:  # flags few enough already
        return float(threshold)
    kept = s[len(s) - allowed - 1]  # the highest score that must not be flagged
    above = np.searchsorted(s, kept, side="right")  # the next higher score, if any
    raised = (kept + s[above]) / 2.0 if above < len(s) else kept
    return float(raised if raised > kept else np.nextafter(kept, np.inf))


def judge(
    rule: AdoptionRule,
    labels: np.ndarray,
    candidate_ranks: np.ndarray,
    serving_ranks: np.ndarray | None,
    *,
    held_out: bool,
    pool_points: np.ndarray,
    threshold: float,
    anomaly_rate: float,
) -> Verdict:
    """Decide whether a candidate serves, and with which threshold.

    ``labels``: ``(m,)`` 0/1 labels of the validation windows; ``candidate_ranks`` / ``serving_ranks``: their
    :func:`percentile_ranks` under each version (``serving_ranks`` None: nothing serves yet). ``pool_points``:
    ``(n,)`` the candidate's point scores of the pool (a point is flagged when at or above the threshold);
    ``threshold``: the one its labels chose (raised by the guard, under ``policy="validate"``, when it flags more than
    the limit); ``anomaly_rate``: the pool's anomalous share of points as the labels estimate it
    (:func:`estimated_anomaly_rate`).
    """
    limit = flag_limit(rule, anomaly_rate)
    points = np.asarray(pool_points, dtype=np.float64)
    share = float(np.mean(points >= threshold)) if len(points) else 0.0
    served_threshold, raised_from, guard_note = float(threshold), None, ""
    if rule.policy == "validate" and share > limit:
        served_threshold = capped_threshold(threshold, points, limit)
        raised_from = float(threshold)
        capped = float(np.mean(points >= served_threshold))
        guard_note = (
            f"; its threshold was raised from {threshold:.4g} (flagging {share:.1%} of the pool's points) to "
            f"{served_threshold:.4g}, flagging {capped:.1%}: the limit is {limit:.1%} (the labels put about "
            f"{anomaly_rate:.1%} of them anomalous)"
        )
        share = capped
    y = np.asarray(labels).astype(np.int64)
    base: dict[str, Any] = {
        "n_validation": len(y),
        "n_anomalous": int(y.sum()),
        "held_out": held_out,
        "flag_share": share,
        "flag_limit": float(limit),
        "anomaly_rate": float(anomaly_rate),
        "threshold": served_threshold,
        "raised_from": raised_from,
    }
    cand_v, weights = agreement(candidate_ranks, y)
    cand_fig = float(np.sum(weights * cand_v)) if len(y) else None
    serv_fig = None
    if serving_ranks is not None and len(y):
        serv_v, _ = agreement(serving_ranks, y)
        serv_fig = float(np.sum(weights * serv_v))
    figures: dict[str, Any] = {"candidate_figure": cand_fig, "serving_figure": serv_fig}

    def verdict(serve: bool, reason: str) -> Verdict:
        return Verdict(serve, reason + guard_note, **base, **figures)

    if rule.policy == "always":
        note = f"; its threshold flags {share:.1%} of the pool's points (limit {limit:.1%})" if share > limit else ""
        return verdict(True, f"the project serves every new version (adoption policy 'always'){note}")
    if serving_ranks is None:  # the first version serves whatever: there is nothing better to keep
        return verdict(True, "served: nothing serves yet")
    if serv_fig is None or cand_fig is None:
        return verdict(True, "served: no new answer to validate on")
    diff = cand_v - serv_v
    mean = float(np.sum(weights * diff))
    se = float(np.sqrt(np.sum(weights**2 * (diff - mean) ** 2)))
    margin = max(rule.tolerance, se)
    kind = "held-out" if held_out else "in-sample"
    if mean < -margin:
        return verdict(
            False,
            f"worse on the {len(y)} newest answers ({kind}): agreement {cand_fig:.3f} against "
            f"{serv_fig:.3f} for the serving version",
        )
    if not held_out:
        return verdict(
            True,
            f"not worse in-sample on the {len(y)} newest answers ({cand_fig:.3f} vs {serv_fig:.3f}); "
            "this detector cannot hold labels out, so the check can only refuse",
        )
    return verdict(
        True, f"not worse on the {len(y)} newest answers, held out: agreement {cand_fig:.3f} vs {serv_fig:.3f}"
    )


__all__ = [
    "POLICIES",
    "AdoptionRule",
    "Verdict",
    "agreement",
    "capped_threshold",
    "estimated_anomaly_rate",
    "flag_limit",
    "judge",
    "percentile_ranks",
]
