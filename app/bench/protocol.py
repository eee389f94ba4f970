"""The benchmark protocol: how a labeled series becomes fit / pool / evaluation parts.

Chronological, per series (the ANCHORS.md protocol, extended with a label pool):

- **One file** (nab, kpi, skab): fit on the first ``fit_frac`` (60 %) of points; the pool the oracle
  may label is that same first part; evaluation is the last 40 %.
- **Train/test pair** (smd, asd, smap): fit on train; the pool is the first ``pool_frac`` (30 %) of
  test; evaluation is the rest of test (last 70 %).
- Every channel is z-scored with the mean and std of the fit part only (constant channels: std 1).
- ``fit_with_pool`` (seed 002's *w/ unlabeled*): a train/test pair is fitted on train ∪ pool (the pool's
  points, unlabeled, appended after train); the z-score still comes from train alone, so the arms differ
  only in what the detector learns from. A no-op for one-file series, whose pool already is the fit part.
- A series whose evaluation part has no anomaly, or only anomalies, is skipped (no PR-AUC exists).

Nothing here reads labels except to decide the skip rule and to hand them to the oracle
(pool) and to evaluation (evaluation part); scalers, thresholds and warm-up never see evaluation labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.bench.data import LoadedSeries
from app.core.loop import Split


@dataclass(frozen=True)
class ProtocolConfig:
    """Split fractions. ``fit_frac``: share of a single-file series used to fit (and as pool);
    ``pool_frac``: share of a test file used as pool, the rest being evaluated."""

    fit_frac: float = 0.6
    pool_frac: float = 0.3
    fit_with_pool: bool = False
    """Fit on train ∪ pool (unsupervised use of the pool, 002's *w/ unlabeled*); train/test pairs only."""


def zscore_from(fit: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """Z-score every array per channel with ``fit``'s mean and std (std 0 -> 1). Returns float64 copies."""
    mu = fit.mean(axis=0)
    sd = fit.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return [(a - mu) / sd for a in (fit, *arrays)]


def make_split(series: LoadedSeries, cfg: ProtocolConfig = ProtocolConfig()) -> Split | None:
    """The :class:`Split` of one series, or None when the protocol skips it (see module docstring)."""
    y = series.y.astype(np.int8)
    if series.X_train is None:
        n = len(series.X)
        cut = int(n * cfg.fit_frac)
        fit_raw = series.X[:cut]
        _, X = zscore_from(fit_raw, series.X)
        X_fit = X[:cut]
        pool, evaluation = (0, cut), (cut, n)
    else:
        n = len(series.X)
        cut = int(n * cfg.pool_frac)
        X_fit, X = zscore_from(series.X_train, series.X)
        pool, evaluation = (0, cut), (cut, n)
        if cfg.fit_with_pool:  # the pool's points carry no label here: the oracle alone reveals them
            X_fit = np.concatenate([X_fit, X[pool[0] : pool[1]]])
    ev = y[evaluation[0] : evaluation[1]]
    if len(ev) == 0 or ev.min() == ev.max():
        return None
    return Split(X_fit=X_fit, X=X, y=y, pool=pool, evaluation=evaluation, name=series.key)
