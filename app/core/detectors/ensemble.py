"""``EnsembleDetector``: unsupervised members, normalised on the fit data, combined by weights learned from labels.

How it works (issue 13, item 1):

1. **Members.** ``members`` names registered detectors (default ``DEFAULT_MEMBERS``: ``("diff", "rollingz",
   "level", "iforest", "knn")``: |Δx|, the rolling z-score, the global z-score against the fit data, the isolation
   forest and the distance of each window's shape to the nearest fit window; deep ones such as ``"lstm_ae"``,
   ``"usad"`` or ``"rlad"`` may be added). Each is built with the ensemble's ``window``, ``stride``, ``seed`` and
   ``device`` plus ``member_params[name]``, and fitted unsupervised on the same ``X``. All members see the same
   windows, so their window scores line up one to one.
   A deep member is measured as an option, not made a default (BENCHMARKS.md, "A deep member in the ensemble"):
   against the default members, ``lstm_ae`` lifts smap at 1 % answers (0.287 → 0.360 PR-AUC, 3 seeds) but lowers
   nab and skab, and on asd its own minimax feedback at 002's learning rate took the served model below its unlabeled
   start (0.235 → 0.212); at the feedback's default since (1e-3, "LSTM-AE's feedback step") asd held on one seed
   of three (0.247 → 0.249; 0.240 → 0.219 and 0.224 → 0.208 on the others), and smap's gain varied (0.319, 0.361).
2. **Normalisation** (``normalize``), learned per member from its window scores on the fit data:

   - ``"tail"`` (default): the score's surprisal under the fit distribution, ``u = −log(1 − F(s))``, with
     ``F`` the fit data's empirical CDF (right-continuous, at most ``1 − 1/(2n)``) and, beyond the largest
     fit score, an exponential tail fitted to the fit scores' top 10 % (``u`` keeps growing linearly
     instead of saturating). A window at the fit data's 90th percentile gets ``u ≈ 2.3``, at the 99.9th
     ``≈ 6.9``; units are comparable across members whatever their score scale, and a score far past
     anything seen in the fit data still ranks above one just past it — **except** for members whose class
     sets ``extrapolates_tail = False`` (``level``, ``iforest``, ``knn``): their ``u`` stops at the largest fit
     score's, ``log 2n``. Their scores grow whenever a series drifts away from its fit data, as the later part
     of a series often does while normal, and under ``hmp`` one member's unbounded ``u`` then drives every
     window; a spike larger than any seen (|Δx|, the rolling z-score) is rarer, and keeps growing. Measured at
     budget 0 (seed 0, the label-efficiency subsets, the prior weights below; mean PR-AUC over nab, kpi, skab,
     smd, asd, smap): only ``knn`` capped 0.365, ``level`` too 0.378 (skab 0.573 → 0.651), ``iforest`` too 0.384
     (nab 0.171 → 0.215), |Δx| too 0.372 and the rolling z-score too 0.368 (kpi's spikes 0.529 → 0.436).
   - ``"rank"``: ``F(s)`` itself, in [0, 1] (saturates at the fit maximum).
   - ``"robust"``: ``(s − median) / IQR`` (heavy-tailed members dominate a mean of these).

3. **Combination** (``pool``) of the normalised member scores ``Z`` ``(n_windows, M)`` with weights
   ``weights_`` on the simplex (non-negative, summing to 1), see :func:`pooled`:

   - ``"hmp"`` (default): ``log Σ_m w_m · exp(Z_m)``. With ``tail`` units ``exp(Z_m) = 1 / p_m``, the
     inverse tail probability, so this is minus the log of the weighted harmonic mean of the members'
     p-values (Wilson 2019): the member that finds a window rarest drives its score, and ``log w_m`` is
     that member's handicap (at ``w_m = 0.05`` it must find a window 20 times rarer to drive it).
   - ``"mean"``: ``Z @ w`` (with ``tail`` units, Fisher's combination ``−Σ w_m log p_m``).

   **Prior** (no labels): the weights ``prior_`` made from ``prior_weights`` (relative, per member name, a member
   not named weighing 1; None = ``DEFAULT_PRIOR_WEIGHTS``: iForest 4, the nearest-window distance 2, rolling z
   0.1, |Δx| and level 1; ``{}`` = equal weights). ``window_scores`` is then exactly ``log Σ_m prior_m ·
   exp(Z_m)``. Under ``hmp`` the rolling z-score at 0.1 / 8.1 must find a window about 60 times rarer than the
   others to drive it, iForest about 4 times less rare. Measured at budget 0 on BENCHMARKS.md's label-efficiency
   subsets (56 series, seed 0; the members' normalised scores pooled offline by
   ``scripts/measure_ensemble_prior.py``), PR-AUC on nab / kpi / skab / smd / asd / smap: equal weights 0.193 /
   0.461 / 0.610 / 0.428 / 0.192 / 0.261 (mean 0.358), these weights 0.215 / 0.529 / 0.640 / 0.440 / 0.200 /
   0.282 (0.384); the four members before ``knn`` and the caps 0.166 / 0.524 / 0.573 / 0.410 / 0.167 / 0.232
   (0.345); each member alone at best 0.202 (``knn``) / 0.343 (|Δx|) / 0.711 (iForest, uncapped) / 0.414
   (``knn``) / 0.195 (``knn``) / 0.286 (``knn``). The weights are a round-numbered point of a grid of 144
   weightings, within 0.005 of its best mean (0.389); chosen on five sets and read on the sixth (leave one set
   out), the grid's best beat equal weights on five held-out sets of six (skab: 0.603 against 0.610).
4. **Learning from labels** (``feedback``). First every member runs its own feedback (deep members:
   masked minimax; ``rlad``: its DQN round) and a member whose scores can change is re-normalised on the
   feedback ``X``'s windows (unsupervised; the fit data are not kept). Then the weights are learned from
   the **labeled windows only**: a window is labeled when its end point is (RLAD's rule, and the point
   scores map each point to the window ending on it, so this is what the evaluation sees), and its
   label is its end point's. ``weights_ = softmax(log prior_ + δ)``, ``δ`` found by L-BFGS minimising

       Σ_i c_i · loss_i(δ) + (strength / 2) · ‖δ‖²

   where ``δ = 0`` is the prior, ``c_i`` weighs each labeled window as ``stride / window`` of an answer
   (the ~``window`` end-point-labeled windows of one answered window count as about one answer), with
   the two classes balanced. The data term grows with the number of answers, the penalty does not, so a
   few labels leave the weights near the prior and many agreeing labels move them decisively; the
   simplex keeps every member's direction (a label can lower a member's weight, never invert it).
   ``combine`` picks ``loss_i``:

   - ``"logistic"`` (default): a logistic model ``σ(a (f_i − b))`` of the pooled score ``f_i`` with a free
     scale ``a > 0`` and
     offset ``b``; needs both classes among the labels (else the weights stay as they are).
   - ``"aad"``: Active Anomaly Discovery's hinge (Das et al. 2016), smoothed: an anomaly should score above,
     a normal window below, the ``tau`` quantile of the combined scores of all of ``X``'s windows (labeled or
     not), in units of their IQR; learns from one class too.

   **The forward check** (``forward_check``, on by default; :func:`forward_check`). What a version is for is ranking
   the part of a series still to come, and the answers, all about the part already seen, can teach weights that rank
   it worse. Measured without the check (the five members, 5 % answers, seed 0, served model): on kpi's a07ac296 the
   evaluation part's PR-AUC fell 0.617 → 0.313, kpi's eight series 0.529 → 0.478, although every round's held-out
   adoption check passed (it also judges on answers about the part already seen); taught by every pool window, the
   weights on that series move ``knn`` from 0.25 to 0.69. So the labeled windows are split in series order,
   weights are learned from the earlier answers alone, and the weights learned from every answer serve only if those
   rank the later answers' windows at least as well (average precision) as the prior does; otherwise, and until each
   side holds ``FORWARD_MIN_ANSWERS`` answers of each class, the prior serves (one label never moves the ranking).
   The split is at the answer nearest the middle one at which both sides hold that many (:func:`later_answers`):
   anomalies often lie in one part of a series, and a split at the middle answer left them all on one side. The
   figures are in the version's metrics (``ensemble_combination`` → ``forward_check``) and the verdict says why the
   prior serves. With the check the same run keeps 0.617.

**Defaults, measured** (ANCHORS protocol, 8 series per data set of nab, kpi, skab, smd, asd, smap capped at
25,000 points, seed 0; 1 % of pool windows answered in 4 hybrid rounds): ``tail`` beats ``rank`` and ``robust``
for every pooling (mean PR-AUC of the prior 0.364 vs 0.346 / 0.330 with a max-like pooling); ``hmp`` beats
``mean`` (0.364 vs 0.342 unlabeled, 0.380 vs 0.354 with labels); adding ``level`` raises the prior to 0.378
and the labeled ensemble to 0.392; ``logistic`` and ``aad`` are within 0.005 of each other. ``logistic`` is the
default because it leaves the weights alone until the labels hold both classes.

**Strength, measured again with the weighted prior** (through the product's loop: BENCHMARKS.md's label-efficiency
subsets, 3 seeds, served model): at 0.3 (the default before the weighted prior) the answers lifted skab at 1 %
(0.571 → 0.584) but at 5 % pulled kpi from 0.522 to 0.462, asd from 0.163 to 0.157 and smd from 0.418 to 0.408;
at 1 kpi 5 % still fell to 0.494; at 3 no set falls by more than one seed-std at 1 % or 5 % (smd 5 %: 0.412 ±
0.004 against 0.418 ± 0.005) and none gains more than 0.004. With every pool window labeled
(``scripts/measure_ensemble_prior.py``) the weights learned at 0.3 rank the evaluation parts *worse* than the
prior (mean PR-AUC 0.337 against 0.345): the pool's answers do not tell how the later part of a series ranks, so
the default (3) keeps the weights close to the measured prior and lets the answers buy the threshold.

5. **Choosing the combination** (``select``). The weights above are learned under ``pool``; with ``hmp`` a
   member's weight is a handicap, not a switch: at ``w = 0.01`` a member still drives every window it finds 100
   times rarer than the others do, so labels saying "iForest ranks these windows, the others do not" cannot make
   the pooled score follow iForest (on skab the served ensemble stays at 0.58 PR-AUC with 1 % answers where
   iForest alone scores 0.70). So the labeled windows may also choose *how* to combine
   (:func:`choose_combination`): ``"pooling"`` between the weights learned under ``hmp`` and under ``mean``;
   ``"members"`` also each member alone; ``"off"`` never. A candidate's figure is its average precision on the
   labeled windows (in-sample: the learned weights are favoured, single members learn nothing); an alternative
   replaces the learned default only when it wins by more than ``select_margin`` **and** by more than two
   standard errors of the gain, bootstrapped over answers (:func:`ap_gain_se`), and only when each class holds
   at least ``SELECT_MIN_ANSWERS`` answers. The choice is stored (``pool_``, ``combination_``, ``selection_``),
   named in the version's metrics and verdict (``training_notes``) and made again on every feedback.
   **Off by default: measured, it does not pay reliably through the product's loop.** Through the loop (bench, 3
   seeds, every label-efficiency series), with ``"members"``: skab 1 % 0.579 → 0.603 and kpi 5 % 0.468 → 0.519
   gained, but nab 1 % fell 0.156 → 0.144, smd 1 % 0.405 → 0.382 and smap 5 % 0.233 → 0.151 ± 0.060 — a member chosen
   on a first round's few answers (two of them often one anomaly) serves, the next queries come from its ranking, and
   the adoption check then keeps it against better candidates (nab's elb_request_count: 0.276 → 0.131 for the rest of
   the run). Without the bootstrap and with two answers per class the falls were larger (smap 1 % 0.191 ± 0.060).
   BENCHMARKS.md, "Letting the answers choose the combination", has the table and commands.

6. **A label-learned residual** (``supervised=True``; off by default). A regularised logistic model of
   each labeled window's features (:meth:`EnsembleDetector.window_features`: the normalised member scores and
   channel-agnostic summaries of the point scorers' per-channel scores) is added to the pooled score with a
   scale ``alpha``; ``C`` and ``alpha`` are cross-validated over the labeled windows grouped by answer, and the
   residual is used only when it beats the pooled score alone by ``RESIDUAL_MIN_GAIN`` average precision on the
   held-out labels. Measured through the bench loop (4 series of each of the six sets, 1 % answers, top-k, seed 0:
   ``bench run ... --param supervised=true|false``): per-channel features gave a mean PR-AUC of 0.346 against
   0.351 without a residual (+0.06 on skab, +0.04 on smap, −0.14 on smd, where one machine fell from 0.767 to
   0.196); channel summaries gave 0.342 (smap's P-4 fell from 0.545 to 0.046). The labeled windows of the pool
   do not tell how the evaluation part will rank, and the adoption check, which sees only pool answers, did not
   catch those falls — so the default learns the weights only.

7. **False alarms answered normal** (``suppress``, 10 by default; 0 turns it off). An analyst who answers "normal" to
   a window the ensemble ranked high has shown it a pattern of this series that is not an anomaly, and the same
   pattern usually comes back. The shapes (standardised with the fit data, each channel's window mean taken away, as
   ``knn`` sees them) of the highest-scoring windows answered normal, ``SUPPRESS_EXEMPLARS`` at most, are kept, and
   every window's score is lowered by ``suppress · exp(−(d / shape_scale_)²)``, ``d`` the distance of its shape to
   the nearest exemplar and ``shape_scale_`` how far a fit window typically lies from its nearest other fit window
   (so a recurrence of an answered pattern, about that far from it, loses about ``suppress / e``; a window unlike
   every exemplar loses nothing). It is checked as the weights are: the exemplars of the earlier answers (series
   order) must rank the later answers' windows at least as well (average precision) as no exemplars do; the split is
   the answer nearest the middle at which the earlier answers hold one "normal" and the later
   ``FORWARD_MIN_ANSWERS`` of each class (:func:`later_answers`); with no such split none are used. The figures
   are in the version's metrics (``false_alarm_check``, ``false_alarm_exemplars``, ``false_alarm_view``) and the
   verdict says what the exemplars do. A version's threshold is chosen on the scores without the penalty
   (:meth:`EnsembleDetector.threshold_basis`), so the exemplars only take alarms away. Why this and not more weight
   learning: the answers say little about how the members rank the later part of a series (steps 4 and 6), but a
   false alarm is a fact about a shape, and a shape recurs. Measured on BENCHMARKS.md's label-efficiency subsets with
   one top-k round of ground-truth answers (``scripts/measure_ensemble_prior.py --false-alarms``, seed 0), PR-AUC on
   nab / kpi / skab / smd / asd / smap, without and with the exemplars: 1 % of the pool's windows answered 0.215 /
   0.531 / 0.640 / 0.454 / 0.200 / 0.282 (mean 0.387) against 0.217 / 0.539 / 0.637 / 0.499 / 0.198 / 0.309 (0.400);
   5 % 0.215 / 0.536 / 0.640 / 0.441 / 0.200 / 0.282 (0.386) against 0.216 / 0.541 / 0.639 / 0.500 / 0.219 / 0.348
   (0.411). Through the product's loop (BENCHMARKS.md, 3 seeds) smd's served PR-AUC at 1 % rose from 0.450 to 0.508,
   asd's from 0.193 to 0.208, kpi's from 0.531 to 0.538. Pulling windows *towards* answered anomalies instead lowered
   the mean (an anomalous window is mostly normal-looking series), and so did a strength of 30 without the check
   (kpi's spikes fell), in a one-off run of the same simulation.

   **Shape or level** (``exemplar_view``, ``"auto"`` by default). A shape does not see the level: on skab, whose
   anomalies are mostly level shifts of ordinary-looking signals, shape exemplars lowered the anomalies with the
   false alarms. Compared on the standardised windows themselves (``"level"``, with its own distance scale), an
   exemplar lowers only windows at its level. Under ``"auto"`` the forward check scores both views on the later
   answers and the level serves only when it ranks them better than shapes by more than two standard errors
   (bootstrapped over answers, :func:`ap_gain_se`); otherwise shapes, the measured default, serve. Measured with the
   simulation above (seed 0), PR-AUC at 1 % / 5 %, mean over the six sets: shapes 0.400 / 0.411, level 0.398 / 0.408
   (skab 0.643 / 0.659 and smap 0.326 / 0.356 better, smd 0.466 / 0.457 against 0.499 / 0.500 worse), the better of
   the two by the check alone 0.400 / 0.413 (smd 0.494 / 0.484), and with the two-standard-error rule 0.401 / 0.416 —
   at or above shapes on every set (skab 0.642 / 0.659, smd 0.502 / 0.503, smap 0.309 / 0.356). Through the product's
   loop (BENCHMARKS.md, 3 seeds) skab's served PR-AUC at 5 % rose from 0.632 to 0.651 and smap's from 0.329 to 0.341,
   but skab's F1 at the deployable threshold at 5 % fell from 0.574 to 0.496: on one series the exemplars lower the
   evaluation part's anomalies with its normal points, below the threshold chosen as if nothing had been lowered.

   **Answered anomalies protect their likes** (``protect_anomalies``, on by default; level exemplars only). The
   windows answered anomalous whose points are mostly anomalous (``PROTECT_SHARE`` of the labeled window end points
   inside them: :func:`mostly_anomalous`), ``SUPPRESS_EXEMPLARS`` at most, are kept beside level exemplars, and a
   window's penalty becomes ``suppress · max(0, exp(−(d / s)²) − exp(−(a / s)²))``, ``a`` its distance to the nearest
   of them: a window at least as like an answered anomaly as an answered false alarm loses nothing. Where the level
   serves, the answers have shown anomalies and false alarms apart by their level, and an anomaly a little above the
   ordinary level (skab's) is otherwise lowered with the false alarms around it. Shapes are not protected: a shape
   (each channel's window mean taken away) of an anomalous window is mostly ordinary series, and protecting shapes
   gave back much of what the exemplars earn on smd (through the loop, seed 0, 1 % answers: PR-AUC 0.507 → 0.489,
   F1 at the deployable threshold 0.409 → 0.362). Protecting level exemplars only (BENCHMARKS.md, 3 seeds): skab's
   PR-AUC at 1 % / 5 % 0.639 / 0.651 → 0.647 / 0.656 and F1 0.515 / 0.496 → 0.534 / 0.581; the cost, where the level
   serves elsewhere, smd's F1 at 1 % 0.412 → 0.399 and smap's PR-AUC at 5 % 0.341 → 0.331; mean F1 over the six sets
   at 5 % 0.308 → 0.322, mean PR-AUC unchanged. The forward check scores the protected exemplars.

   **Answered anomalies can pull their likes up** (``attract``; 0, off, by default). Where protectors serve (level
   exemplars), the term becomes ``suppress · max(0, n − a) − attract · max(0, a − n)``, ``n`` and ``a`` the likeness
   ``exp(−(d / s)²)`` to the nearest answered false alarm and to the nearest answered anomaly: a window more like an
   answered anomaly than like any false alarm scores up to ``attract`` higher. An answer about a level shift says
   more than "this window": the shift lasts, and the windows at its level are anomalous too, while the few answers of
   1 % (six a series on skab) never reach the two of each class on each side that re-learning the weights needs. The
   pull is part of what the forward check scores, an answered anomaly is not pulled up by its own answer (the
   protectors overlapping it are left out of its pull, as an answered false alarm's own exemplars are left out of its
   penalty), and the threshold is chosen on the scores with the pull but without the penalty (the pull can add
   alarms; the penalty only takes them away). **Off by default, measured** (BENCHMARKS.md, "Answered anomalies can
   pull their likes up"): at 30 skab's served PR-AUC at 1 % rose from 0.648 ± 0.002 to 0.688 ± 0.008 (3 seeds; at
   5 %, 0.777 ± 0.014 against 0.657 ± 0.006), nab, kpi, asd, smap and smd at 1 % stayed within 0.002, but at 5 %
   smap fell from 0.331 ± 0.026 to its unlabeled start (0.288 ± 0.005) and one nab series from 0.455 to 0.214: NAB
   labels wide windows around an anomaly, its answered anomalies lay at the series' ordinary level, and the pull lifted
   30 % of the later part. The forward check cannot tell these from skab's case: on that series the later answers'
   average precision is 0.02–0.03 with or without the pull, and tried as a candidate of its own, one that must rank
   the later answers better than the level view without it, the pull never served on skab (by more than two standard
   errors or by any margin), nor by two standard errors on nab. A project whose anomalies are level shifts can turn
   it on (detector parameters ``{"attract": 30}``).

   **Only answers at an unusual level pull** (``pull_quantile``, 0.8): an answered-anomalous window pulls its likes up
   only if its level — the largest absolute window mean over channels, in the fit data's standard deviations — is at or
   above that quantile of the series' window levels; the others still protect their likes from the penalty. A level
   shift's answers are at an unusual level (skab's anomalous windows: median window level 1.5–2.2 against their normal
   windows' 0.75–1.16 on six of its eight series); NAB's wide anomaly labels are mostly at the ordinary level
   (0.11–0.36, as its normal windows). Measured with ``attract=30`` (3 seeds, served, BENCHMARKS.md): nab at 5 % 0.205 ±
   0.011 → 0.210 ± 0.006, smap at 5 % 0.288 ± 0.005 → 0.326 ± 0.023, skab 0.688 → 0.688 at 1 % and 0.777 → 0.769 at 5 %;
   the nab series above still falls (0.439 → 0.312, seed 0: some of its answered anomalies are above the gate), so the
   pull stays off by default. A gate on the level of every channel at once is crude: a window can pass on a channel that
   has nothing to do with the anomaly.

``window_drivers`` names, per window, the member with the largest contribution (``log w_m + Z_m`` for
``hmp``, ``w_m · Z_m`` for ``mean``: :func:`contributions`; a member chosen alone drives every window);
``validation_window_scores`` learns the weights from some labels only, to validate a version on others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, cast

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from app.core.detectors.base import Detector
from app.core.metrics import pr_auc
from app.core.runtime import Progress, ProgressCallback, report
from app.core.windows import (
    LabeledRange,
    Scaler,
    as_2d,
    end_point_scores,
    flat_windows,
    known_window_positions,
    nearest_distance,
    overlapping_known,
    ranges_to_point_labels,
    window_ends,
    window_fingerprints,
    window_shapes,
    window_starts,
)

NORMALIZERS = ("tail", "rank", "robust")
COMBINERS = ("logistic", "aad")
POOLS = ("hmp", "mean")
DEFAULT_MEMBERS = ("diff", "rollingz", "level", "iforest", "knn")
DEFAULT_PRIOR_WEIGHTS: Mapping[str, float] = MappingProxyType({"iforest": 4.0, "rollingz": 0.1, "knn": 2.0})
"""Relative prior weights when ``prior_weights`` is None; a member not named weighs 1 (module docstring, step 3)."""
_CACHE_SIZE = 3
"""Series whose raw member scores are kept (a loop round scores the pool, learns on the labeled part, and
rescores the whole series)."""
SUPPRESS_EXEMPLARS = 1024
"""Answered-normal windows kept as false-alarm exemplars (the highest-scoring first; step 7)."""
PROTECT_SHARE = 0.5
"""An answered window protects its likes from the false-alarm penalty (step 7) when at least this share of its
points (seen through the labeled window end points inside it) was answered anomalous: a picture of the anomaly, not
ordinary series that ends in one."""
SHAPE_SCALE_SAMPLE = (1024, 2048)
"""Fit windows whose nearest other fit window (of this many, seeded) sets the shape distance scale (step 7)."""
RESIDUAL_C = (0.01, 0.1, 1.0)
"""Inverse L2 strengths the residual's logistic model is cross-validated over."""
RESIDUAL_ALPHA = (0.5, 1.0, 2.0, 4.0)
"""Scales of the residual (log-odds) added to the pooled score (surprisal units), cross-validated."""
RESIDUAL_MIN_GAIN = 0.02
"""Average precision on held-out labels the residual must add before it is used at all."""
RESIDUAL_MIN_GROUPS = 3
"""Answers of each class (anomalous and normal) needed before a residual is tried."""
SELECT_MODES = ("pooling", "members", "off")
"""What the labels may choose besides the weights (module docstring, step 5)."""
SELECT_MIN_ANSWERS = 3
"""Answers of each class (anomalous and normal) needed before the labels may choose another combination."""
EXEMPLAR_VIEWS = ("shape", "level")
"""How a false-alarm exemplar and a window are compared (step 7): ``"shape"`` takes each channel's window mean away,
``"level"`` keeps it; ``exemplar_view="auto"`` lets the forward check choose, the first on a tie."""
FORWARD_MIN_ANSWERS = 2
"""Answers of each class needed on each side (earlier, later) of the forward check before weights are learned."""
BOOTSTRAP_DRAWS = 200
"""Resamples of the answers behind the standard error of a candidate's gain (:func:`ap_gain_se`)."""
BOOTSTRAP_WINDOWS = 2000
"""Labeled windows the bootstrap looks at, at most (evenly spaced): its cost stays flat however many answers."""
_TAIL_FROM = 0.9
"""The exponential tail beyond the fit maximum is fitted between this fit quantile and the maximum."""


# -- normalisation ---------------------------------------------------------------------------------


def fit_normalizer(scores: np.ndarray, extrapolate: bool = True) -> dict[str, np.ndarray | float | bool]:
    """What every normaliser needs from one member's fit window scores ``(n,)``: a quantile grid.

    Returns ``{"q": (K,) increasing scores, "p": (K,) their CDF values, "median", "iqr", "beta", "extrapolate"}``;
    with ``extrapolate=False`` the ``tail`` units stop at the largest fit score's (the member's
    ``Detector.extrapolates_tail``).
    The grid has steps of 0.01 in probability up to the 90th percentile and is dense above it (down to
    ``1/n``), where anomalies live; between grid points the CDF is linear. ``beta`` is the scale of
    the exponential tail used beyond the largest fit score.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    if n == 0:
        raise ValueError("no fit window scores to normalise")
    probs = np.unique(
        np.concatenate([np.linspace(0.0, _TAIL_FROM, 91), 1.0 - np.geomspace(1 - _TAIL_FROM, 1.0 / n, 120)])
    )
    q = np.quantile(s, probs)
    q = np.append(q, s[-1])
    p = np.append(probs, 1.0 - 0.5 / n)  # the largest fit score: F capped so that −log(1 − F) stays finite
    p = np.maximum.accumulate(np.clip(p, 0.0, 1.0 - 0.5 / n))
    # Ties (e.g. many exact zeros of |Δx|): keep one point per distinct score with the largest CDF value
    # (right-continuous ECDF), so np.interp sees strictly increasing abscissae.
    keep = np.append(q[1:] != q[:-1], True)
    q, p = q[keep], p[keep]
    median, q75, q25 = np.quantile(s, [0.5, 0.75, 0.25])
    spread = max(float(s[-1] - s[0]), abs(float(median)), 1.0) * 1e-9
    iqr = float(q75 - q25) if q75 - q25 > spread else max(float(s[-1] - median), spread)
    q_tail = float(np.quantile(s, _TAIL_FROM))
    u_gap = -np.log(0.5 / n) + np.log(1 - _TAIL_FROM)  # u(max) − u(q_tail)
    beta = max(float(s[-1]) - q_tail, iqr, spread) / max(float(u_gap), 1.0)
    return {"q": q, "p": p, "median": float(median), "iqr": iqr, "beta": float(beta), "extrapolate": extrapolate}


def normalize(scores: np.ndarray, norm: dict[str, Any], kind: str = "tail") -> np.ndarray:
    """One member's window scores ``(n,)`` mapped by its fitted normaliser (see the module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    if kind == "robust":
        return cast(np.ndarray, (s - norm["median"]) / norm["iqr"])
    q, p = norm["q"], norm["p"]
    cdf = np.interp(s, q, p, left=0.0) if len(q) > 1 else np.where(s >= q[0], p[0], 0.0)
    if kind == "rank":
        return cdf
    if kind != "tail":
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZERS)}, not {kind!r}")
    u = -np.log1p(-cdf)
    beyond = s > q[-1]
    if beyond.any() and norm.get("extrapolate", True):  # else capped: np.interp gave p[-1] beyond the fit data
        u[beyond] = -np.log1p(-p[-1]) + (s[beyond] - q[-1]) / norm["beta"]
    return u


# -- learning the weights --------------------------------------------------------------------------


def _softmax(theta: np.ndarray) -> np.ndarray:
    e = np.exp(theta - theta.max())
    return cast(np.ndarray, e / e.sum())


def _softplus(x: np.ndarray) -> np.ndarray:
    return cast(np.ndarray, np.logaddexp(0.0, x))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def pooled(Z: np.ndarray, weights: np.ndarray, pool: str = "hmp") -> np.ndarray:
    """The combined score of every row of ``Z`` ``(n, M)`` with simplex ``weights`` ``(M,)``: ``(n,)``.

    ``"mean"``: ``Z @ w`` (with ``tail`` units, Fisher's combination of the members' tail probabilities);
    ``"hmp"``: ``log Σ_m w_m · exp(Z_m)`` (with ``tail`` units, minus the log of the weighted harmonic mean
    of the tail probabilities: the rarest member dominates, ``log w_m`` is its handicap)."""
    if pool == "mean":
        return cast(np.ndarray, Z @ weights)
    if pool != "hmp":
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {pool!r}")
    top = Z.max(axis=1)  # log Σ w e^Z = top + log Σ w e^(Z − top): no overflow, the max term is w_m >= 0 exactly
    return cast(np.ndarray, top + np.log(np.exp(Z - top[:, None]) @ weights))


def contributions(Z: np.ndarray, weights: np.ndarray, pool: str = "hmp") -> np.ndarray:
    """Each member's share of each combined score, ``(n, M)``: ``w_m Z_m`` (mean) or ``log w_m + Z_m`` (hmp)."""
    if pool == "mean":
        return cast(np.ndarray, Z * weights)
    with np.errstate(divide="ignore"):
        return cast(np.ndarray, Z + np.log(weights))


def _pooled_and_jacobian(Z: np.ndarray, theta: np.ndarray, pool: str) -> tuple[np.ndarray, np.ndarray]:
    """``f = pooled(Z, softmax(θ))`` ``(n,)`` and ``df/dθ`` ``(n, M)``."""
    w = _softmax(theta)
    if pool == "mean":
        f = Z @ w
        return f, w * (Z - f[:, None])  # d(Z·w)/dθ_m = w_m (Z_m − Z·w)
    h = Z + theta  # log w_m = θ_m − logsumexp(θ)
    lse = logsumexp(h, axis=1)
    r = np.exp(h - lse[:, None])  # each member's share of the pooled sum
    return lse - logsumexp(theta), r - w


def learn_weights(
    Z: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray,
    *,
    combine: str = "logistic",
    pool: str = "hmp",
    strength: float = 1.0,
    Z_all: np.ndarray | None = None,
    tau: float = 0.97,
    prior: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Simplex weights ``(M,)`` of the members from labeled windows (module docstring, step 4).

    ``Z``: ``(n_labeled, M)`` normalised member scores; ``y``: ``(n_labeled,)`` 0/1; ``sample_weight``:
    ``(n_labeled,)`` answers each window stands for (the classes are balanced here); ``pool``: how
    weighted members combine (:func:`pooled`); ``Z_all``: ``(n_windows, M)`` every window of the series
    (``"aad"``'s quantile; defaults to ``Z``); ``prior``: ``(M,)`` positive weights the penalty pulls towards
    (normalised here; default equal). Returns the weights and a small dict of diagnostics. With nothing to learn
    from, the prior.
    """
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    m = Z.shape[1]
    prior = np.full(m, 1.0 / m) if prior is None else np.asarray(prior, dtype=np.float64) / np.sum(prior)
    log_prior = np.log(prior)  # θ = log prior + δ: the penalty is on δ, the distance from the prior
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    info: dict[str, float] = {"n_pos": n_pos, "n_neg": n_neg, "loss": float("nan")}
    if combine not in COMBINERS:
        raise ValueError(f"combine must be one of {', '.join(COMBINERS)}, not {combine!r}")
    if n_pos + n_neg == 0 or m == 1 or (combine == "logistic" and min(n_pos, n_neg) == 0):
        return prior, info
    sw = np.asarray(sample_weight, dtype=np.float64)
    # Balance the classes, keeping the total weight (the number of answers the labels stand for).
    c = sw
    if n_pos and n_neg:
        c = np.where(y, sw.sum() / (2 * sw[y].sum()), sw.sum() / (2 * sw[~y].sum())) * sw
    sign = np.where(y, 1.0, -1.0)
    delta0 = np.zeros(m)

    if combine == "logistic":
        f0 = pooled(Z, prior, pool)
        spread = max(float(np.std(f0)), 1e-6)
        x0 = np.concatenate([delta0, [np.log(1.0 / spread), float(np.median(f0))]])

        def objective(v: np.ndarray) -> tuple[float, np.ndarray]:
            delta, log_a, b = v[:m], v[m], v[m + 1]
            a = np.exp(log_a)
            f, jac = _pooled_and_jacobian(Z, log_prior + delta, pool)
            logit = a * (f - b)
            loss = float(c @ _softplus(-sign * logit)) + 0.5 * strength * float(delta @ delta) + 1e-3 * log_a**2
            d_logit = -sign * _sigmoid(-sign * logit) * c  # dLoss/dlogit
            g_delta = a * (jac.T @ d_logit) + strength * delta
            g_log_a = float(d_logit @ (f - b)) * a + 2e-3 * log_a
            g_b = -a * float(d_logit.sum())
            return float(loss), np.concatenate([g_delta, [g_log_a, g_b]])

        res = minimize(objective, x0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        info["loss"] = float(res.fun)
        return _softmax(log_prior + res.x[:m]), info

    # "aad": hinge to the tau-quantile of all windows' combined scores, smoothed, quantile held per pass.
    Za = Z if Z_all is None else np.asarray(Z_all, dtype=np.float64)
    delta = delta0
    for _ in range(3):
        fa = pooled(Za, _softmax(log_prior + delta), pool)
        q_tau = float(np.quantile(fa, tau))
        scale = max(float(np.subtract(*np.quantile(fa, [0.75, 0.25]))), 1e-6)

        def aad_objective(v: np.ndarray, q_tau: float = q_tau, scale: float = scale) -> tuple[float, np.ndarray]:
            f, jac = _pooled_and_jacobian(Z, log_prior + v, pool)
            margin = sign * (q_tau - f) / scale  # > 0: on the wrong side of the quantile
            loss = float(c @ _softplus(margin)) + 0.5 * strength * float(v @ v)
            d_f = c * _sigmoid(margin) * (-sign / scale)
            return loss, jac.T @ d_f + strength * v

        res = minimize(aad_objective, delta, jac=True, method="L-BFGS-B", options={"maxiter": 300})
        delta = res.x
        info["loss"] = float(res.fun)
        info["quantile"] = q_tau
    return _softmax(log_prior + delta), info


def answer_groups(window_idx: np.ndarray, window: int, stride: int) -> np.ndarray:
    """An answer id per labeled window, ``window_idx`` ``(n,)`` sorted window indices -> ``(n,)`` int.

    An answered window labels the end points of about ``window / stride`` consecutive windows, so each run of
    consecutive labeled windows is an answer, and a run longer than that (answers side by side) is cut into
    pieces of that length."""
    idx = np.asarray(window_idx, dtype=np.int64)
    if len(idx) == 0:
        return idx
    per_answer = max(1, window // stride)
    run = np.concatenate([[0], np.cumsum(np.diff(idx) != 1)])
    run_start = idx[np.concatenate([[0], np.flatnonzero(np.diff(run)) + 1])][run]
    piece = (idx - run_start) // per_answer
    _, ids = np.unique(np.column_stack([run, piece]), axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


def mostly_anomalous(window_idx: np.ndarray, labels: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Which labeled windows picture an anomaly: ``window_idx`` ``(n,)`` sorted window indices with 0/1 ``labels``
    (each its end point's) -> ``(n,)`` bool, True where the window's own label is 1 and at least ``PROTECT_SHARE`` of
    the window end points inside it (the ``window // stride`` windows ending in it, itself included) are labeled 1.
    An unlabeled end point counts as not anomalous."""
    idx = np.asarray(window_idx, dtype=np.int64)
    anomalous = np.asarray(labels) == 1
    per_window = max(1, window // stride)
    ones = np.concatenate([[0], np.cumsum(anomalous)])  # anomalous labeled windows among the first k
    # labeled windows ending inside window i: indices in (i - per_window, i]
    first = np.searchsorted(idx, idx - per_window, side="right")
    inside = ones[np.arange(1, len(idx) + 1)] - ones[first]
    return cast(np.ndarray, anomalous & (inside >= PROTECT_SHARE * per_window))


def _bootstrap_ap(scores: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision of ``scores`` ``(n,)`` against ``y`` ``(n,)`` 0/1 under each row of case weights
    ``weights`` ``(B, n)`` (a bootstrap draw's multiplicities): ``(B,)``. Tied scores share the precision at the
    end of their tie, as in :func:`app.core.metrics.pr_auc`; one sort serves every draw."""
    order = np.argsort(-scores, kind="stable")
    s, yy, w = scores[order], y[order].astype(np.float64), weights[:, order]
    last_of_tie = np.append(np.flatnonzero(s[1:] != s[:-1]), len(s) - 1)
    tie_end = last_of_tie[np.searchsorted(last_of_tie, np.arange(len(s)))]
    tp = np.cumsum(w * yy, axis=1)
    fp = np.cumsum(w * (1.0 - yy), axis=1)
    precision = tp[:, tie_end] / np.maximum(tp[:, tie_end] + fp[:, tie_end], 1e-12)
    positives = w * yy
    return cast(np.ndarray, (positives * precision).sum(axis=1) / np.maximum(positives.sum(axis=1), 1e-12))


def ap_gain_se(
    candidate: np.ndarray, default: np.ndarray, y: np.ndarray, groups: np.ndarray, rng: np.random.Generator
) -> float:
    """Standard error of ``AP(candidate) − AP(default)`` on labeled windows, by a bootstrap over answers.

    ``candidate``, ``default``: ``(n,)`` scores of the labeled windows; ``y``: ``(n,)`` 0/1; ``groups``: ``(n,)``
    answer ids. Answers holding an anomaly and the others are resampled separately (so every draw holds both
    classes), ``BOOTSTRAP_DRAWS`` times; the windows of one answer move together (a draw weighs each window by
    how often its answer was drawn)."""
    y = np.asarray(y).astype(np.int8)
    candidate, default, groups = np.asarray(candidate, np.float64), np.asarray(default, np.float64), np.asarray(groups)
    if len(y) > BOOTSTRAP_WINDOWS:  # evenly spaced windows: neighbours of one answer say nearly the same
        keep = np.linspace(0, len(y) - 1, BOOTSTRAP_WINDOWS).round().astype(np.int64)
        candidate, default, y, groups = candidate[keep], default[keep], y[keep], groups[keep]
    _, where = np.unique(groups, return_inverse=True)
    where = where.reshape(-1)
    n_groups = int(where.max()) + 1
    has_anomaly = np.bincount(where, weights=y, minlength=n_groups) > 0
    draws = np.zeros((BOOTSTRAP_DRAWS, n_groups))
    for stratum in (np.flatnonzero(has_anomaly), np.flatnonzero(~has_anomaly)):
        if len(stratum):
            draws[:, stratum] = rng.multinomial(
                len(stratum), np.full(len(stratum), 1.0 / len(stratum)), BOOTSTRAP_DRAWS
            )
    weights = draws[:, where]  # (B, n): each window weighs as many times as its answer was drawn
    gains = _bootstrap_ap(candidate, y, weights) - _bootstrap_ap(default, y, weights)
    return float(np.std(gains))


def answers_per_class(groups: np.ndarray, y: np.ndarray) -> int:
    """The fewer of the anomalous and the normal answers among labeled windows (``groups``, ``y``: ``(n,)`` answer
    ids and 0/1 labels): how much evidence the rarer class has."""
    y = np.asarray(y)
    return min(len(np.unique(groups[y == 1])), len(np.unique(groups[y == 0])))


def later_answers(
    groups: np.ndarray, labels: np.ndarray, earlier: tuple[int, int], later: tuple[int, int]
) -> np.ndarray:
    """Which labeled windows belong to the later answers of a forward check: ``(n,)`` bool.

    ``groups``: answer ids (:func:`answer_groups`, which grow with the position in the series); ``labels``: the
    windows' 0/1. The answers are split in series order at the answer nearest the middle one at which the earlier
    answers hold at least ``earlier`` = (anomalous, normal) answers and the later at least ``later``; at the middle
    answer when no split does (the caller then finds too few). Not always the middle: anomalies often lie in one part
    of a series (on NAB's nyc_taxi every answer "anomaly" of a 40-answer project lay after the middle answer, so the
    learned weights were never checked and never served)."""
    answers, where = np.unique(groups, return_inverse=True)
    where = where.reshape(-1)
    y = np.asarray(labels)
    n = len(answers)
    ok = np.ones(n + 1, dtype=bool)  # ok[k]: the first k answers earlier, the rest later
    for c, value in enumerate((1, 0)):  # earlier / later are (anomalous, normal) counts
        holds = np.bincount(where, weights=(y == value), minlength=n) > 0  # per answer: holds this class
        first_k = np.concatenate([[0], np.cumsum(holds)])  # answers holding it among the first k
        ok &= (first_k >= earlier[c]) & (first_k[-1] - first_k >= later[c])
    ok[[0, n]] = False  # both sides hold an answer
    middle = n // 2
    valid = np.flatnonzero(ok)
    split = int(valid[np.argmin(np.abs(valid - middle))]) if len(valid) else middle
    return cast(np.ndarray, where >= split) if n else np.zeros(len(groups), dtype=bool)


def forward_check(
    Z: np.ndarray,
    idx: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    learn: Callable[[np.ndarray], np.ndarray],
    prior: np.ndarray,
    pool: str,
) -> dict[str, float]:
    """Do weights learned from the earlier answers rank the later answers better than the prior does?

    ``Z`` ``(n_windows, M)``; ``idx`` ``(n,)`` sorted labeled window indices, ``labels`` their 0/1, ``groups`` their
    answer ids (:func:`answer_groups`); ``learn(mask)`` the weights learned from the labeled windows ``mask``
    selects. The answers are split in series order (:func:`later_answers`). Returns the figures (``earlier_answers``,
    ``later_answers``, ``learned_ap``, ``prior_ap``: average precision on the later answers' windows), or ``{}``
    when either side holds fewer than ``FORWARD_MIN_ANSWERS`` answers of each class."""
    need = (FORWARD_MIN_ANSWERS, FORWARD_MIN_ANSWERS)
    later = later_answers(groups, labels, need, need)
    for side in (~later, later):
        if answers_per_class(groups[side], labels[side]) < FORWARD_MIN_ANSWERS:
            return {}
    weights = learn(~later)
    late_z, late_y = Z[idx[later]], labels[later]
    return {
        "earlier_answers": float(len(np.unique(groups[~later]))),
        "later_answers": float(len(np.unique(groups[later]))),
        "learned_ap": pr_auc(pooled(late_z, weights, pool), late_y),
        "prior_ap": pr_auc(pooled(late_z, prior, pool), late_y),
    }


def choose_combination(
    Z: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    learned: dict[str, np.ndarray],
    default: str,
    member_names: Sequence[str],
    margin: float,
    *,
    members_alone: bool = True,
    rng: np.random.Generator | None = None,
) -> tuple[str, str, np.ndarray, dict[str, float]]:
    """Which combination the labels choose (module docstring, step 5): ``(name, pool, weights, figures)``.

    ``Z``: ``(n_labeled, M)`` normalised member scores of the labeled windows; ``y``: their 0/1 labels;
    ``groups``: their answer ids (:func:`answer_groups`); ``learned``: pool name -> weights learned under it
    (``default`` among them). The candidates are named ``"learned <pool>"`` for each entry of ``learned`` and,
    with ``members_alone``, ``"<member> alone"`` (pool ``"mean"`` with a one-hot weight). ``figures``: each
    candidate's average precision on the labeled windows, by name (empty when the labels may not choose). The
    default wins unless another beats it by more than ``margin`` and by more than two standard errors of the gain
    (:func:`ap_gain_se`, with ``rng``; the largest such gain wins), and always when either class holds fewer than
    ``SELECT_MIN_ANSWERS`` answers."""
    from app.core.metrics import pr_auc

    y = np.asarray(y).astype(np.int8)
    default_name = f"learned {default}"
    if answers_per_class(groups, y) < SELECT_MIN_ANSWERS:
        return default_name, default, learned[default], {}
    rng = rng if rng is not None else np.random.default_rng(0)
    m = Z.shape[1]
    candidates = {f"learned {pool}": (pool, w) for pool, w in learned.items()}
    if members_alone:
        candidates |= {f"{member_names[j]} alone": ("mean", np.eye(m)[j]) for j in range(m)}
    scores = {name: pooled(Z, w, pool) for name, (pool, w) in candidates.items()}
    figures = {name: pr_auc(s, y) for name, s in scores.items()}
    chosen, best_gain = default_name, 0.0
    for name, figure in figures.items():
        gain = figure - figures[default_name]
        if gain > max(margin, best_gain) and gain > 2.0 * ap_gain_se(
            scores[name], scores[default_name], y, groups, rng
        ):
            chosen, best_gain = name, gain
    pool, weights = candidates[chosen]
    return chosen, pool, weights, figures


# -- the detector ----------------------------------------------------------------------------------


def _scaled_progress(callback: ProgressCallback | None, phase: str, i: int, n: int) -> ProgressCallback | None:
    """A callback for member ``i`` of ``n`` that reports the whole call's fraction."""
    if callback is None:
        return None

    def relay(p: Progress) -> None:
        callback(
            Progress(
                phase=f"{phase} {p.phase}",
                fraction=(i + p.fraction) / n,
                step=p.step,
                total_steps=p.total_steps,
                loss=p.loss,
                reward=p.reward,
                extra=p.extra,
            )
        )

    return relay


class EnsembleDetector(Detector):
    """Members' normalised window scores combined by simplex weights: a prior, then learned from labels.

    Parameters: ``window``, ``stride``, ``seed``, ``device`` (handed to every member); ``members``
    (registry names, default ``DEFAULT_MEMBERS``); ``member_params`` (name -> extra
    keyword arguments of that member; ``window``/``stride`` are the ensemble's); ``normalize``
    (``"tail"`` | ``"rank"`` | ``"robust"``); ``combine`` (``"logistic"`` | ``"aad"``); ``strength`` (the
    pull of the weights towards the prior, in answers: see the module docstring); ``tau`` (``"aad"``'s
    quantile); ``select`` and ``select_margin`` (whether, and by how much average precision, the labels may choose
    another combination: module docstring, step 5); ``prior_weights`` (member name -> relative weight before any
    label, a member not named weighing 1; None = ``DEFAULT_PRIOR_WEIGHTS``, ``{}`` = equal: step 3); ``forward_check``
    (weights learned from answers serve only if those from the earlier answers rank the later ones at least as well
    as the prior: step 4); ``suppress`` (how much lower, in surprisal units, a window shaped like a false alarm
    answered normal scores: step 7); ``exemplar_view`` (``"shape"``, ``"level"`` or ``"auto"``: how a window is
    compared with those exemplars, step 7); ``protect_anomalies`` (windows like an answered anomaly are not lowered
    by level exemplars, step 7); ``attract`` (how much higher, in surprisal units, a window more like an answered
    anomaly than like any answered false alarm scores where level exemplars serve; 0, the default, is off: step 7);
    ``pull_quantile`` (an answered anomaly pulls only if its window's level is at or above this quantile of the
    series' window levels; 0 lets every one pull: step 7).
    Learned:
    ``members_``, ``member_names_``, ``norms_``, ``prior_`` (the prior's simplex weights), ``weights_``, ``pool_``
    (the pooling in use), ``combination_`` (its name), ``selection_`` (the figures behind the choice),
    ``shape_scaler_``, ``shape_scale_``, ``level_scale_``, ``suppression_`` (the false-alarm exemplars, their view and
    the answered anomalies protecting their likes) and ``suppression_check_``.
    """

    name: ClassVar[str] = "ensemble"
    summary: ClassVar[str] = (
        "Label-aware ensemble (default): |Δx|, rolling z-score, level, iForest and nearest-window distance combined by "
        "measured prior weights; "
        "the answers re-weigh the members, windows shaped like a false alarm answered normal score lower, and a new "
        "version serves only if the answers say it is not worse."
    )
    starter_params: ClassVar[dict[str, Any]] = {}
    default_strategy: ClassVar[str] = "hybrid"
    """Top-k finds the anomalies; the interval picks show the combination where the members disagree (measured
    with hybrid queries: see the module docstring)."""
    can_hold_out_labels: ClassVar[bool] = True
    """``validation_window_scores`` can score with the weights learned from a subset of the labels."""
    explains_windows: ClassVar[bool] = True
    """``window_drivers`` and ``member_names_`` name the member that drove each window's score."""
    param_bounds: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("suppress", "attract", "strength"), "[0, inf)"),
        "tau": "(0, 1)",
        "select_margin": "[0, 1)",
        "pull_quantile": "[0, 1]",
    }
    _cache: dict[Any, np.ndarray] | None  # the members' raw window scores of the last series, by ``_key``

    def __init__(
        self,
        *,
        window: int = 25,
        stride: int = 1,
        seed: int = 0,
        device: str = "auto",
        members: Sequence[str] = DEFAULT_MEMBERS,
        member_params: dict[str, dict[str, Any]] | None = None,
        normalize: str = "tail",
        pool: str = "hmp",
        combine: str = "logistic",
        strength: float = 3.0,
        tau: float = 0.97,
        select: str = "off",
        select_margin: float = 0.02,
        supervised: bool = False,
        prior_weights: dict[str, float] | None = None,
        forward_check: bool = True,
        suppress: float = 10.0,
        exemplar_view: str = "auto",
        protect_anomalies: bool = True,
        attract: float = 0.0,
        pull_quantile: float = 0.8,
    ) -> None:
        super().__init__(window=window, stride=stride, seed=seed, device=device)
        self.members = members
        self.member_params = member_params
        self.normalize = normalize
        self.pool = pool
        self.combine = combine
        self.strength = strength
        self.tau = tau
        self.select = select
        self.select_margin = select_margin
        self.supervised = supervised
        self.prior_weights = prior_weights
        self.forward_check = forward_check
        self.suppress = suppress
        self.exemplar_view = exemplar_view
        self.protect_anomalies = protect_anomalies
        self.attract = attract
        self.pull_quantile = pull_quantile
        self.check_params()  # a bad parameter is refused where the project is made, not in its first job

    # -- helpers -------------------------------------------------------------------------------
    def check_params(self) -> EnsembleDetector:
        """Types and bounds (:meth:`Detector.check_params`), how the parameters fit together, and each member's own
        parameters (the members are built, not fitted: cheap)."""
        super().check_params()
        self._check_combination()
        for name in self.members:
            try:
                self._make_members([name])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"member {name}: {exc}") from None
        return self

    def _check_combination(self) -> None:
        names = list(self.members)
        if not names:
            raise ValueError("an ensemble needs at least one member")
        if len(set(names)) != len(names):
            raise ValueError(f"members must be distinct, got {names}")
        if "ensemble" in names:
            raise ValueError("an ensemble cannot be its own member")
        for name, params in (self.member_params or {}).items():
            if name not in names:
                raise ValueError(f"member_params names {name!r}, which is not a member ({names})")
            clash = sorted({"window", "stride", "seed", "device"} & set(params))
            if clash:
                raise ValueError(f"member_params[{name!r}] sets {clash}: members take the ensemble's")
        if self.normalize not in NORMALIZERS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZERS)}, not {self.normalize!r}")
        if self.combine not in COMBINERS:
            raise ValueError(f"combine must be one of {', '.join(COMBINERS)}, not {self.combine!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {self.pool!r}")
        if self.exemplar_view not in ("auto", *EXEMPLAR_VIEWS):
            raise ValueError(f"exemplar_view must be auto, {', '.join(EXEMPLAR_VIEWS)}, not {self.exemplar_view!r}")
        if self.select not in SELECT_MODES:
            raise ValueError(f"select must be one of {', '.join(SELECT_MODES)}, not {self.select!r}")
        for name, weight in (self.prior_weights or {}).items():
            if name not in names:
                raise ValueError(f"prior_weights names {name!r}, which is not a member ({names})")
            if not (isinstance(weight, (int, float)) and np.isfinite(weight) and weight > 0):
                raise ValueError(f"prior_weights[{name!r}] must be a positive number, not {weight!r}")

    def prior_weights_for(self, names: Sequence[str]) -> np.ndarray:
        """The prior's simplex weights ``(M,)`` for members ``names``: ``prior_weights`` (``DEFAULT_PRIOR_WEIGHTS``
        when None), a member not named weighing 1, normalised to sum to 1."""
        given: Mapping[str, float] = DEFAULT_PRIOR_WEIGHTS if self.prior_weights is None else self.prior_weights
        w = np.array([float(given.get(name, 1.0)) for name in names])
        return cast(np.ndarray, w / w.sum())

    def _make_members(self, names: Sequence[str] | None = None) -> list[Detector]:
        """Unfitted members ``names`` (default: every member), each checked by ``make_detector``."""
        from app.core.detectors.registry import make_detector

        extra = self.member_params or {}
        return [
            make_detector(
                name, window=self.window, stride=self.stride, seed=self.seed, device=self.device, **extra.get(name, {})
            )
            for name in (self.members if names is None else names)
        ]

    @staticmethod
    def _changes_with_labels(member: Detector) -> bool:
        return type(member).feedback is not Detector.feedback

    def _raw_member_scores(self, X: np.ndarray) -> np.ndarray:
        """Every member's raw window scores: ``(n_windows, M)``."""
        cols = [np.asarray(m.window_scores(X), dtype=np.float64) for m in self.members_]
        lengths = {len(c) for c in cols}
        if len(lengths) != 1:
            counts = dict(zip(self.member_names_, map(len, cols), strict=True))
            raise RuntimeError(f"members disagree on the number of windows: {counts}")
        return np.column_stack(cols)

    def _key(self, X: np.ndarray) -> tuple[Any, ...]:
        x = np.ascontiguousarray(X)
        digest = hashlib.blake2b(x.view(np.uint8).reshape(-1).data, digest_size=16).digest()  # .data: no copy
        return (x.shape, x.dtype.str, digest)

    def member_window_scores(self, X: np.ndarray) -> np.ndarray:
        """Normalised member window scores ``Z``: ``(n_windows, M)``, columns in ``member_names_`` order.

        The members' raw scores of the last few series are kept in memory (keyed by a hash of ``X``; not
        serialised), so scoring, explaining and learning on the same series run the members once; member
        feedback clears them."""
        self._check_fitted()
        key = self._key(X)
        cache: dict[Any, np.ndarray] = getattr(self, "_cache", None) or {}
        raw = cache.pop(key, None)
        if raw is None:
            raw = self._raw_member_scores(X)
        cache[key] = raw  # most recent last
        while len(cache) > _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        self._cache = cache
        return np.column_stack([normalize(raw[:, j], self.norms_[j], self.normalize) for j in range(raw.shape[1])])

    def _labeled_windows(
        self, n_points: int, ranges: Sequence[LabeledRange], exclude: Sequence[LabeledRange] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(window indices, 0/1 labels)`` of the windows whose end point is labeled (and not in ``exclude``)."""
        ends = window_ends(n_points, self.window, self.stride)
        point = ranges_to_point_labels(list(ranges), n_points)[ends]
        keep = point >= 0
        if exclude:
            keep &= ranges_to_point_labels(list(exclude), n_points)[ends] < 0
        idx = np.flatnonzero(keep)
        return idx, point[idx].astype(np.int8)

    def _learn(self, Z: np.ndarray, idx: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """The combination the labeled windows ``idx`` (labels ``labels``) teach, as the learned attributes it sets:
        ``weights_``, ``pool_``, ``combination_``, ``selection_`` and ``last_fit_info_``."""
        # Each labeled window stands for stride / window of an answer (a window answer labels ~window / stride
        # windows by their end points).
        sw = np.full(len(idx), self.stride / self.window)

        def weights_under(pool: str) -> tuple[np.ndarray, dict[str, float]]:
            return learn_weights(
                Z[idx],
                labels,
                sw,
                combine=self.combine,
                pool=pool,
                strength=self.strength,
                Z_all=Z,
                tau=self.tau,
                prior=self.prior_,
            )

        weights, info = weights_under(self.pool)
        combination, forward = f"learned {self.pool}", {}
        groups = answer_groups(idx, self.window, self.stride)
        if self.forward_check and len(idx):

            def learn_from(mask: np.ndarray) -> np.ndarray:
                return learn_weights(
                    Z[idx[mask]],
                    labels[mask],
                    sw[mask],
                    combine=self.combine,
                    pool=self.pool,
                    strength=self.strength,
                    Z_all=Z,
                    tau=self.tau,
                    prior=self.prior_,
                )[0]

            forward = forward_check(Z, idx, labels, groups, learn_from, self.prior_, self.pool)
            if not forward or forward["learned_ap"] < forward["prior_ap"]:
                weights, combination = self.prior_.copy(), "prior"
        learned = {
            "weights_": weights,
            "pool_": self.pool,
            "combination_": combination,
            "selection_": {},
            "forward_": forward,
            "last_fit_info_": info,
        }
        if self.select == "off" or len(idx) == 0:
            return learned
        if answers_per_class(groups, labels) < SELECT_MIN_ANSWERS:
            return learned  # checked here too: the other pooling's weights are not worth learning then
        other = next(p for p in POOLS if p != self.pool)
        name, pool, weights, figures = choose_combination(
            Z[idx],
            labels,
            groups,
            {self.pool: weights, other: weights_under(other)[0]},
            self.pool,
            self.member_names_,
            self.select_margin,
            members_alone=self.select == "members",
            rng=np.random.default_rng(self.seed),
        )
        return {**learned, "weights_": weights, "pool_": pool, "combination_": name, "selection_": figures}

    # -- the contract ----------------------------------------------------------------------------
    def fit(
        self, X: np.ndarray, y: np.ndarray | None = None, progress: ProgressCallback | None = None
    ) -> EnsembleDetector:
        """Fit every member unsupervised on ``X`` ``(n_points, n_channels)``, then each member's normaliser on
        its window scores of ``X``. Weights start at the prior. ``y`` (optional point labels, -1 unknown)
        goes to the members and, where any is known, the weights are learned from it as in ``feedback``."""
        self.check_params()
        members = self._make_members()
        for i, member in enumerate(members):
            member.fit(X, y, progress=_scaled_progress(progress, "fit", i, len(members)))
        self.members_ = members
        self.member_names_ = list(self.members)
        self._cache = None
        raw = self._raw_member_scores(X)
        self.norms_ = [fit_normalizer(raw[:, j], m.extrapolates_tail) for j, m in enumerate(members)]
        self.prior_ = self.prior_weights_for(self.members)
        self.weights_ = self.prior_.copy()
        self.pool_ = self.pool
        self.combination_ = "prior"
        self.selection_: dict[str, float] = {}
        self.forward_: dict[str, float] = {}
        self.residual_: dict[str, Any] = {}
        self.shape_scaler_: Scaler | None = Scaler("standard").fit(as_2d(X))
        scales = self._fit_scales(X)  # one sample of fit windows for both views
        self.shape_scale_ = scales["shape"]
        self.level_scale_: float | None = scales["level"]  # None only in versions stored before the level view
        self.suppression_: dict[str, Any] = {}
        self.suppression_check_: dict[str, float] = {}
        self.labels_seen_ = 0
        self.feedback_rounds_ = 0
        self.last_fit_info_: dict[str, float] = {}
        self.fitted_ = True
        if y is not None:
            labels = np.asarray(y)
            if len(labels) != len(X):
                raise ValueError(f"y has {len(labels)} labels for {len(X)} points")
            ends = window_ends(len(X), self.window, self.stride)
            idx = np.flatnonzero(labels[ends] >= 0)
            if len(idx):
                Z, idx_labels = self.member_window_scores(X), labels[ends][idx].astype(np.int8)
                vars(self).update(self._learn(Z, idx, idx_labels))
                vars(self).update(self._learn_suppression(X, pooled(Z, self.weights_, self.pool_), idx, idx_labels))
        return self

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        """``pooled(Z, weights_, pool_)`` plus the label-learned residual when labels earned one, minus the
        false-alarm penalty when answers earned exemplars (step 7): ``(n_windows,)``. Before any label ``weights_`` is
        ``prior_``, ``pool_`` is ``pool`` and there is neither (the prior, module docstring step 3)."""
        return self._unsuppressed(X) - self._suppression(X, self.suppression_)

    def _unsuppressed(self, X: np.ndarray) -> np.ndarray:
        """The window scores ``(n_windows,)`` without the false-alarm penalty: pooled members plus the residual."""
        return pooled(self.member_window_scores(X), self.weights_, self.pool_) + self._residual(X, self.residual_)

    def threshold_basis(self, X: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The point scores ``(n_points,)`` without the false-alarm penalty when answers earned exemplars (else
        ``points``), but with the answered anomalies' pull (step 7): a threshold chosen on them is where it would be
        had no answer lowered anything, and the penalty then only takes alarms away. Chosen on the penalised labeled
        points, it sat below the evaluation part's new false alarms — the answered false alarms, which recur among
        themselves, are the windows the other answers' exemplars lower most (BENCHMARKS.md, F1 at the deployable
        threshold)."""
        if not self.suppression_:
            return points
        x = np.asarray(X)
        basis = self._unsuppressed(x)
        if self._pull():  # the whole term again only where it can pull (off by default)
            basis = basis + np.maximum(-self._suppression(x, self.suppression_), 0.0)
        return end_point_scores(basis, len(x), self.window, self.stride)

    # -- false alarms answered normal (module docstring, step 7) ---------------------------------------
    def _shapes(self, X: np.ndarray) -> np.ndarray:
        """Every window of ``X`` standardised with the fit data, as a row (a view): ``(n_windows, window * C)``;
        :meth:`_compared` of some rows gives what an exemplar is compared on."""
        if self.shape_scaler_ is None:
            raise RuntimeError("this version was stored before false alarms were learned: it has no shape scaler")
        return flat_windows(self.shape_scaler_.transform(X), self.window, self.stride)

    def _window_levels(self, X: np.ndarray) -> np.ndarray:
        """Each window's level: the largest absolute window mean over channels of ``X`` standardised with the fit
        data, ``(n_windows,)`` in fit standard deviations (what the pull's gate compares, step 7)."""
        assert self.shape_scaler_ is not None
        scaled = self.shape_scaler_.transform(X)
        sums = np.vstack([np.zeros((1, scaled.shape[1])), np.cumsum(scaled, axis=0)])
        starts = window_starts(len(scaled), self.window, self.stride)
        means = (sums[starts + self.window] - sums[starts]) / self.window
        return cast(np.ndarray, np.abs(means).max(axis=1))

    def _compared(self, rows: np.ndarray, view: str) -> np.ndarray:
        """Rows of :meth:`_shapes` as ``view`` compares them: ``(n, window * C)`` float32, a copy. ``"shape"``: each
        channel's window mean taken away (:func:`~app.core.windows.window_shapes`); ``"level"``: as standardised."""
        if view == "shape":
            return window_shapes(rows, self.window)
        return np.ascontiguousarray(rows, dtype=np.float32)

    def _scale(self, view: str) -> float | None:
        """The distance at which a window stops looking like an exemplar under ``view`` (None: not known, a version
        stored before exemplars could keep the level)."""
        return self.shape_scale_ if view == "shape" else getattr(self, "level_scale_", None)

    def _fit_scales(self, X: np.ndarray) -> dict[str, float]:
        """Per view of ``EXEMPLAR_VIEWS``, how far a fit window typically lies from its nearest other fit window (median
        over one seeded sample of windows, overlapping windows excluded): the distance at which a window stops looking
        like an exemplar."""
        rows = self._shapes(X)
        rng = np.random.default_rng(self.seed)
        n_query, n_reference = SHAPE_SCALE_SAMPLE
        q = np.sort(rng.choice(len(rows), min(n_query, len(rows)), replace=False))
        r = np.sort(rng.choice(len(rows), min(n_reference, len(rows)), replace=False))
        _, trivial = overlapping_known(q, r, self.window, self.stride)  # every sampled row is a fit window
        scales = {}
        for view in EXEMPLAR_VIEWS:
            nearest = nearest_distance(self._compared(rows[q], view), self._compared(rows[r], view), trivial)
            nearest = nearest[np.isfinite(nearest)]
            figures = [f for f in ((np.median(nearest), np.mean(nearest)) if len(nearest) else ()) if f > 1e-9]
            scales[view] = float(figures[0]) if figures else 1.0  # a flat series: every window equal; a unit scale
        return scales

    def _suppression(
        self, X: np.ndarray, suppression: dict[str, Any], at: np.ndarray | None = None, batch: int = 4096
    ) -> np.ndarray | float:
        """What the answers take off each window's score (or each window index of ``at``): ``(n_windows,)``
        (``(len(at),)``) in surprisal units; 0 without exemplars. With ``n = exp(−(d / scale)²)`` and
        ``a = exp(−(e / scale)²)``, ``d`` the window's distance to the nearest exemplar (an answered false alarm)
        under the exemplars' view, ``e`` to the nearest protector (an answered anomaly; ``a = 0`` without
        protectors) and ``scale`` that view's (:meth:`_scale`), it is ``suppress · max(0, n − a)`` (the false-alarm
        penalty: a window at least as like an answered anomaly as an answered false alarm loses nothing) minus
        ``attract · max(0, a − n)`` (the pull: a window more like an answered anomaly gains), ``attract`` the
        strength stored with the exemplars (none in versions stored before the pull).

        **An answer does not lower or raise itself.** A window equal (bit for bit, by fingerprint) to an
        answered-normal window at index ``p`` ignores the exemplars overlapping ``p``, and one equal to an
        answered-anomalous window the protectors overlapping it in the pull (as ``knn`` ignores trivial matches):
        the answered windows keep the score the other answers give them, so a threshold chosen on the labeled points
        sees the false alarms and the anomalies as the unlabeled part will, not moved by their own answer."""
        if not suppression:
            return 0.0
        view = suppression.get("view", "shape")  # stored before the level view: shapes
        rows_of, exemplars, positions = self._shapes(X), suppression["exemplars"], suppression["positions"]
        protectors = suppression.get("protectors")  # stored before answered anomalies protected: none
        protectors = protectors if protectors is not None and len(protectors) else None
        attract = float(suppression.get("attract", 0.0)) if protectors is not None else 0.0
        pulls = suppression.get("protector_pulls")  # stored before the level gate: every protector pulls
        if attract > 0 and pulls is not None and not np.any(pulls):
            attract = 0.0
        rows = np.arange(len(rows_of)) if at is None else np.asarray(at)
        scale = cast(float, self._scale(view))
        parts = [np.empty(0)]
        for b in range(0, len(rows), batch):
            compared = self._compared(rows_of[rows[b : b + batch]], view)
            own = known_window_positions(compared, suppression["fingerprints"], suppression["fingerprint_positions"])
            normal = np.exp(-((nearest_distance(compared, exemplars, self._own_matches(own, positions)) / scale) ** 2))
            if protectors is None:
                parts.append(self.suppress * normal)
                continue
            anomaly = np.exp(-((nearest_distance(compared, protectors) / scale) ** 2))
            part = self.suppress * np.maximum(normal - anomaly, 0.0)
            if attract > 0:
                own = known_window_positions(
                    compared, suppression["protector_fingerprints"], suppression["protector_fingerprint_positions"]
                )
                mask = self._own_matches(own, suppression["protector_positions"])
                if mask is not None or (pulls is not None and not np.all(pulls)):
                    pulling = slice(None) if pulls is None else np.asarray(pulls, dtype=bool)
                    mask = None if mask is None else mask[:, pulling]
                    anomaly = np.exp(-((nearest_distance(compared, protectors[pulling], mask) / scale) ** 2))
                part -= attract * np.maximum(anomaly - normal, 0.0)
            parts.append(part)
        return np.concatenate(parts)

    def _own_matches(self, own: np.ndarray, positions: np.ndarray) -> np.ndarray | None:
        """For rows that are known windows (``own`` ``(n,)``: a window index, or -1), which references at
        ``positions`` ``(k,)`` overlap them: an ``(n, k)`` bool mask, or None when no row is known (most windows are
        no answer's: no mask to build for them)."""
        answered, trivial = overlapping_known(own, positions, self.window, self.stride)
        if not len(answered):
            return None
        mask = np.zeros((len(own), len(positions)), dtype=bool)
        mask[answered] = trivial
        return mask

    def _exemplars(
        self, X: np.ndarray, base: np.ndarray, normal: np.ndarray, view: str, anomalous: np.ndarray
    ) -> dict[str, Any]:
        """The answered-normal windows ``normal`` (indices) that score highest under ``base``, at most
        ``SUPPRESS_EXEMPLARS``, as ``view`` compares them, with their window indices, a fingerprint of every window
        of ``normal`` with its index, and (``view`` ``"level"`` with ``protect_anomalies``; else none) the
        answered-anomalous windows ``anomalous`` (at most ``SUPPRESS_EXEMPLARS``, evenly spaced) as protectors, with
        their indices, a fingerprint of every window of ``anomalous`` (none when ``attract`` is 0: only the pull
        looks an answer's own windows up), and the pull's strength ``attract``:
        ``{"view": view, "exemplars": (k, window * C) float32, "positions": (k,), "fingerprints": (n,) sorted uint64,
        "fingerprint_positions": (n,), "protectors": (p, window * C) float32, "protector_positions": (p,),
        "protector_fingerprints": (q,) sorted uint64, "protector_fingerprint_positions": (q,), "attract": float}``
        (see :meth:`_suppression`)."""
        top = np.sort(normal[np.argsort(-base[normal], kind="stable")[:SUPPRESS_EXEMPLARS]])
        rows = self._shapes(X)
        fingerprints = window_fingerprints(self._compared(rows[normal], view))
        order = np.argsort(fingerprints, kind="stable")
        if view != "level" or not self.protect_anomalies or not len(anomalous):
            anomalous = np.empty(0, dtype=np.int64)
        kept = anomalous
        if len(kept) > SUPPRESS_EXEMPLARS:
            kept = kept[np.linspace(0, len(kept) - 1, SUPPRESS_EXEMPLARS).round().astype(np.int64)]
        pulled = anomalous if self.attract > 0 else anomalous[:0]  # only the pull looks its own answer up
        pulls = np.ones(len(kept), dtype=bool)
        if self.attract > 0 and self.pull_quantile > 0 and len(kept):
            levels = self._window_levels(X)
            pulls = levels[kept] >= np.quantile(levels, self.pull_quantile)
        anomaly_fingerprints = window_fingerprints(self._compared(rows[pulled], view))
        anomaly_order = np.argsort(anomaly_fingerprints, kind="stable")
        return {
            "view": view,
            "exemplars": self._compared(rows[top], view),
            "positions": top.astype(np.int64),
            "fingerprints": fingerprints[order],
            "fingerprint_positions": normal[order].astype(np.int64),
            "protectors": self._compared(rows[kept], view),
            "protector_positions": kept.astype(np.int64),
            "protector_fingerprints": anomaly_fingerprints[anomaly_order],
            "protector_fingerprint_positions": pulled[anomaly_order].astype(np.int64),
            "attract": float(self.attract),
            "protector_pulls": pulls,
        }

    def _learn_suppression(
        self, X: np.ndarray, base: np.ndarray, idx: np.ndarray, labels: np.ndarray
    ) -> dict[str, Any]:
        """``suppression_`` (the exemplars, or ``{}``) and ``suppression_check_`` (its forward check's figures: the
        later answers' average precision without exemplars, ``plain_ap``, with each view's, ``<view>_ap``, and with
        the best view's, ``suppressed_ap``) that the labeled windows ``idx`` (0/1 ``labels``) teach, on top of the
        window scores ``base`` (step 7). The first view of ``EXEMPLAR_VIEWS`` (of those allowed) serves unless another
        ranks the later answers better by more than two standard errors, and only if it ranks them at least as well
        as no exemplars do."""
        off: dict[str, Any] = {"suppression_": {}, "suppression_check_": {}}
        labels = np.asarray(labels)
        if self.suppress <= 0 or self.shape_scaler_ is None or not (labels == 0).any():
            return off
        groups = answer_groups(idx, self.window, self.stride)
        later = later_answers(groups, labels, (0, 1), (FORWARD_MIN_ANSWERS, FORWARD_MIN_ANSWERS))
        earlier_normal = idx[~later & (labels == 0)]
        if not len(earlier_normal) or answers_per_class(groups[later], labels[later]) < FORWARD_MIN_ANSWERS:
            return off  # nothing to learn from earlier, or too little to check it on later
        late, late_y = idx[later], labels[later]
        pictured = mostly_anomalous(idx, labels, self.window, self.stride)  # the protectors (step 7)
        earlier_anomalous = idx[~later & pictured]
        check = {
            "earlier_answers": float(len(np.unique(groups[~later]))),
            "later_answers": float(len(np.unique(groups[later]))),
            "plain_ap": pr_auc(base[late], late_y),
        }
        views: tuple[str, ...] = EXEMPLAR_VIEWS if self.exemplar_view == "auto" else (self.exemplar_view,)
        views = tuple(v for v in views if self._scale(v) is not None)
        if not views:
            return off
        scored = {}
        for view in views:
            exemplars = self._exemplars(X, base, earlier_normal, view, earlier_anomalous)
            scored[view] = base[late] - self._suppression(X, exemplars, at=late)
            check[f"{view}_ap"] = pr_auc(scored[view], late_y)
        best, rng = views[0], np.random.default_rng(self.seed)
        for view in views[1:]:  # another view replaces the first only when it ranks the later answers clearly better
            gain = check[f"{view}_ap"] - check[f"{best}_ap"]
            if gain > 0 and gain > 2 * ap_gain_se(scored[view], scored[best], late_y, groups[later], rng):
                best = view
        check["suppressed_ap"] = check[f"{best}_ap"]
        if check["suppressed_ap"] < check["plain_ap"]:
            return {"suppression_": {}, "suppression_check_": check}
        exemplars = self._exemplars(X, base, idx[labels == 0], best, idx[pictured])
        return {"suppression_": exemplars, "suppression_check_": check}

    # -- the label-learned residual (module docstring, step 6) ------------------------------------------
    def window_features(self, X: np.ndarray) -> np.ndarray:
        """What the residual learns from, per window ``(n_windows, M + k·C)``: the normalised member scores and,
        for every point scorer among the members, its per-channel scores at the window's end point (which
        channel misbehaves, and how), each compressed by ``sign(f)·log1p(|f|)``. Unsupervised."""
        from app.core.detectors.statistical import PointScorer

        Z = self.member_window_scores(X)
        ends = window_ends(len(X), self.window, self.stride)
        cols = [Z]
        for m in self.members_:
            if isinstance(m, PointScorer):
                c = np.abs(m.channel_scores(X)[ends])  # (n_windows, C)
                # channel-agnostic summaries: per-channel columns let 38-channel SMD machines overfit the pool
                cols += [
                    c.max(axis=1, keepdims=True),
                    c.mean(axis=1, keepdims=True),
                    (c > 3.0).mean(axis=1, keepdims=True),
                ]
        F = np.column_stack(cols)
        return cast(np.ndarray, np.sign(F) * np.log1p(np.abs(F)))

    def _residual(self, X: np.ndarray, residual: dict[str, Any]) -> np.ndarray | float:
        if not residual:
            return 0.0
        F = (self.window_features(X) - residual["mu"]) / residual["sd"]
        return cast(np.ndarray, float(residual["alpha"]) * (F @ residual["coef"]))

    def _learn_residual(self, X: np.ndarray, base: np.ndarray, idx: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """A regularised logistic model of the labeled windows' features, added to the pooled score with the
        scale ``alpha`` — both chosen by cross-validation grouped by answer, and only when that beats the
        pooled score alone by ``RESIDUAL_MIN_GAIN`` average precision on the held-out labels. Otherwise
        ``{}`` (none): a few answers, one class, or labels the features cannot separate leave the ranking as
        the weights make it."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import average_precision_score
        from sklearn.model_selection import GroupKFold

        y = np.asarray(labels).astype(np.int64)
        groups = answer_groups(idx, self.window, self.stride)  # windows of one answer stay together
        if not self.supervised or answers_per_class(groups, y) < RESIDUAL_MIN_GROUPS:
            return {}
        F_all = self.window_features(X)
        mu, sd = F_all.mean(axis=0), F_all.std(axis=0)
        sd = np.where(sd > 1e-9, sd, 1.0)
        F = (F_all[idx] - mu) / sd
        b = base[idx]
        folds = list(GroupKFold(n_splits=min(3, len(np.unique(groups)))).split(F, y, groups))
        best = (float(average_precision_score(y, b)) + RESIDUAL_MIN_GAIN, 0.0, 0.0)
        for C in RESIDUAL_C:
            oof = np.zeros(len(y))
            for train, test in folds:
                if y[train].min() == y[train].max():
                    continue  # this fold's training part holds one class: it adds nothing to the base
                model = LogisticRegression(C=C, class_weight="balanced", max_iter=300).fit(F[train], y[train])
                oof[test] = model.decision_function(F[test]) - model.intercept_[0]
            for alpha in RESIDUAL_ALPHA:
                ap = float(average_precision_score(y, b + alpha * oof))
                if ap > best[0]:
                    best = (ap, C, alpha)
        _, C, alpha = best
        if alpha == 0.0:
            return {}
        model = LogisticRegression(C=C, class_weight="balanced", max_iter=300).fit(F, y)
        return {"mu": mu, "sd": sd, "coef": model.coef_[0].astype(np.float64), "alpha": float(alpha), "C": float(C)}

    def feedback(
        self, X: np.ndarray, ranges: Sequence[LabeledRange], progress: ProgressCallback | None = None
    ) -> EnsembleDetector:
        """Members' own feedback on ``X`` with ``ranges``, then the weights learned from the labeled windows.

        ``ranges``: every label so far (half-open point ranges of ``X``, value 0/1). Members whose scores
        labels can change get their normaliser refitted on ``X``'s windows (unlabeled use of ``X``).
        """
        self._check_fitted()
        ranges = list(ranges)
        learners = [j for j, m in enumerate(self.members_) if self._changes_with_labels(m)]
        for step, j in enumerate(learners):
            self.members_[j].feedback(
                X, ranges, progress=_scaled_progress(progress, "feedback", step, len(learners) + 1)
            )
        if learners:  # their scores changed: forget every cached series, re-normalise them on X
            self._cache = None
            raw = self._raw_member_scores(X)
            for j in learners:
                self.norms_[j] = fit_normalizer(raw[:, j], self.members_[j].extrapolates_tail)
            self._cache = {self._key(X): raw}
        Z = self.member_window_scores(X)
        idx, labels = self._labeled_windows(len(X), ranges)
        vars(self).update(self._learn(Z, idx, labels))
        base = pooled(Z, self.weights_, self.pool_)
        self.residual_ = self._learn_residual(X, base, idx, labels)
        vars(self).update(self._learn_suppression(X, base + self._residual(X, self.residual_), idx, labels))
        self.labels_seen_ = len(idx)
        self.feedback_rounds_ += 1
        report(progress, Progress(phase="feedback combine", fraction=1.0))
        return self

    # -- what the loop and the service read --------------------------------------------------------
    def training_notes(self) -> tuple[dict[str, Any], str]:
        """How the last fit or feedback combines the members (``ensemble_combination`` in the version's metrics:
        the choice, the weights, each candidate's average precision on the labeled windows, the forward checks'
        figures and how many false-alarm exemplars lower the scores) and, in words, why the weights are the prior
        or another combination, and what the exemplars do."""
        default = f"learned {self.pool}"
        notes = {
            "ensemble_combination": {
                "chosen": self.combination_,
                "pool": self.pool_,
                "weights": dict(zip(self.member_names_, (round(float(w), 4) for w in self.weights_), strict=True)),
                "labeled_ap": {k: round(v, 4) for k, v in self.selection_.items()},
                "forward_check": {k: round(v, 4) for k, v in self.forward_.items()},
                "false_alarm_exemplars": len(self.suppression_.get("exemplars", ())),
                "false_alarm_view": self.suppression_.get("view", "shape") if self.suppression_ else None,
                "false_alarm_protectors": len(self.suppression_.get("protectors", ())),
                "anomaly_pull": self._pull(),
                "false_alarm_check": {k: round(v, 4) for k, v in self.suppression_check_.items()},
            }
        }
        clauses = [self._weights_clause(default)]
        if self.suppression_:
            like = "shaped like" if self.suppression_.get("view", "shape") == "shape" else "like (shape and level)"
            protectors = len(self.suppression_.get("protectors", ()))
            unless = f", unless as like one of the {protectors} inside answers 'anomaly'," if protectors else ""
            pull, used = "", "the earlier answers' false alarms"
            if self._pull():
                pulls = self.suppression_.get("protector_pulls")
                of = (
                    "those"
                    if pulls is None or np.all(pulls)
                    else f"the {int(np.sum(pulls))} at an unusual level of those"
                )
                pull = f", and windows more like one of {of} {protectors} than like them up to {self._pull():g} higher"
                used = "the earlier answers"
            clauses.append(
                # exemplars are windows (one per stride) inside the answers, not answers: say so, or 7 answers read
                # as "the 175 highest-scoring windows answered normal"
                f"windows {like} the {len(self.suppression_['exemplars'])} highest-scoring windows inside answers "
                f"'normal'{unless} score up to {self.suppress:g} lower{pull} ({used}, so used, "
                f"ranked the later answers at least as well: average precision "
                f"{self.suppression_check_['suppressed_ap']:.3f} against {self.suppression_check_['plain_ap']:.3f})"
            )
        return notes, "; ".join(c for c in clauses if c)

    def _pull(self) -> float:
        """How much higher a window just like an answered anomaly scores (step 7; 0 without a protector that pulls)."""
        protectors = self.suppression_.get("protectors", ())
        pulls = self.suppression_.get("protector_pulls")  # stored before the level gate: every protector pulls
        if not len(protectors) or (pulls is not None and not np.any(pulls)):
            return 0.0
        return float(self.suppression_.get("attract", 0.0))

    def _weights_clause(self, default: str) -> str:
        """Why the weights are what they are, in words ("" when there is nothing to say)."""
        if self.combination_ == "prior" and self.forward_:
            f = self.forward_
            return (
                f"the ensemble keeps its prior weights: weights learned from the earlier {f['earlier_answers']:.0f} "
                f"answers ranked the later {f['later_answers']:.0f} worse than the prior does (average precision "
                f"{f['learned_ap']:.3f} against {f['prior_ap']:.3f})"
            )
        if self.combination_ == "prior" and self.forward_check and self.labels_seen_ > 0:
            return (
                f"the ensemble keeps its prior weights until the answers, split in series order, hold "
                f"{FORWARD_MIN_ANSWERS} of each class on each side (its forward check)"
            )
        if self.combination_ in ("prior", default) or not self.selection_:
            return ""
        clause = (
            f"the ensemble scores with {self.combination_}: its average precision on the labeled windows "
            f"({self.selection_[self.combination_]:.3f}) beat the {default} combination's "
            f"({self.selection_[default]:.3f}) by more than {self.select_margin:g} and two standard errors"
        )
        return clause

    def window_drivers(self, X: np.ndarray, window_scores: np.ndarray | None = None) -> np.ndarray:
        """Index into ``member_names_`` of the member contributing most (``w_m · Z_m``) to each window:
        ``(n_windows,)`` int. ``window_scores``: this detector's scores of ``X`` if the caller has them
        (only checked for length; the members' scores of the last series are cached)."""
        Z = self.member_window_scores(X)
        if window_scores is not None and len(window_scores) != len(Z):
            raise ValueError(f"{len(window_scores)} window scores for {len(Z)} windows")
        share = contributions(Z, self.weights_, self.pool_)
        share[:, self.weights_ <= 0] = -np.inf  # a member left out drives nothing, even where its share ties at 0
        return cast(np.ndarray, np.argmax(share, axis=1).astype(np.int64))

    def validation_window_scores(
        self, X: np.ndarray, train_ranges: Sequence[LabeledRange], heldout_ranges: Sequence[LabeledRange]
    ) -> np.ndarray:
        """Window scores ``(n_windows,)`` of ``X`` with the weights learned from ``train_ranges`` only.

        The members stay as they are (no member feedback); windows whose end point is in ``heldout_ranges``
        are left out of the learning even where ``train_ranges`` also cover them, so the caller can score
        the held-out labels honestly. The detector itself is not changed."""
        self._check_fitted()
        Z = self.member_window_scores(X)
        idx, labels = self._labeled_windows(len(X), list(train_ranges), list(heldout_ranges))
        learned = self._learn(Z, idx, labels)
        base = pooled(Z, learned["weights_"], learned["pool_"])
        base = base + self._residual(X, self._learn_residual(X, base, idx, labels))
        return base - self._suppression(X, self._learn_suppression(X, base, idx, labels)["suppression_"])

    # -- serialization -----------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state = {k: v for k, v in super()._get_state().items() if k != "members_"}
        state["member_bytes_"] = [m.to_bytes() for m in self.members_]
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        from app.core.detectors.registry import load_detector

        state = dict(state)
        blobs = state.pop("member_bytes_")
        super()._set_state(state)
        self.members_ = [load_detector(b, device=self.device) for b in blobs]  # members run where the ensemble does
        self._cache = None
        if not hasattr(self, "prior_"):  # stored before the prior had weights: it was the equal one
            self.prior_ = np.full(len(self.members_), 1.0 / len(self.members_))
        # stored before the labels chose the combination (step 5): the learned weights under ``pool``
        if not hasattr(self, "pool_"):
            self.pool_ = self.pool
            self.combination_ = f"learned {self.pool}" if getattr(self, "feedback_rounds_", 0) else "prior"
            self.selection_ = {}
        if not hasattr(self, "forward_"):  # stored before the forward check
            self.forward_ = {}
        if not hasattr(self, "suppression_"):  # stored before false alarms were learned (step 7): none are
            self.suppression_, self.suppression_check_ = {}, {}
            self.shape_scaler_ = None


__all__ = [
    "COMBINERS",
    "DEFAULT_MEMBERS",
    "DEFAULT_PRIOR_WEIGHTS",
    "EXEMPLAR_VIEWS",
    "FORWARD_MIN_ANSWERS",
    "NORMALIZERS",
    "POOLS",
    "SELECT_MIN_ANSWERS",
    "SELECT_MODES",
    "EnsembleDetector",
    "answer_groups",
    "answers_per_class",
    "ap_gain_se",
    "choose_combination",
    "contributions",
    "fit_normalizer",
    "forward_check",
    "later_answers",
    "learn_weights",
    "mostly_anomalous",
    "normalize",
    "pooled",
]
