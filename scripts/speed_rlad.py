"""Time RLAD: scoring a long univariate series, and one retraining (feedback) round.

Usage::

    python scripts/speed_rlad.py                                  # 1,000,000-point scoring, 100,000-point round
    python scripts/speed_rlad.py --score-points 200000 --round-points 20000

Targets (2-core CPU): scoring 1,000,000 points <= 20 s; one feedback round on 100,000 points <= 60 s.
The series is a noisy sine with a 20-point spike every 5,000 points (synthetic: no data files needed).
The round gets 2 % of the windows labeled (end points, as the active-learning loop asks), after the
warm-up windows, so label propagation and DQN training both run at their default budgets.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.rlad.detector import RLADDetector  # noqa: E402
from app.core.windows import LabeledRange, window_ends  # noqa: E402
from scripts.speed_core import synthetic_series  # noqa: E402 - one synthetic series for both speed scripts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score-points", type=int, default=1_000_000)
    parser.add_argument("--round-points", type=int, default=100_000)
    parser.add_argument("--label-fraction", type=float, default=0.02)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")

    # One feedback round on a 100,000-point series.
    x, y = synthetic_series(args.round_points)
    det = RLADDetector(device=args.device, seed=0)
    t0 = time.perf_counter()
    det.fit(x)
    t_fit = time.perf_counter() - t0
    ends = window_ends(len(x), det.window)
    rng = np.random.default_rng(0)
    asked = set(det.initial_queries(x).tolist())
    asked.update(rng.choice(len(ends), int(args.label_fraction * len(ends)), replace=False).tolist())
    ranges = [LabeledRange(int(ends[i]), int(ends[i]) + 1, int(y[ends[i]])) for i in sorted(asked)]
    det.feedback(x, ranges)  # the first round also pays torch's one-time lazy imports
    t0 = time.perf_counter()
    det.feedback(x, ranges)
    t_round = time.perf_counter() - t0
    print(f"fit (scaler, iForest, agent) on {len(x):,} points: {t_fit:.1f} s")
    print(f"one feedback round on {len(x):,} points, {det.labels_seen_:,} labeled windows, "
          f"{det.last_round_['pseudo_labels']} pseudo-labels, {det.episodes}x{det.steps_per_episode} steps: "
          f"{t_round:.1f} s (target <= 60 s)")

    # Scoring a 1,000,000-point series with the trained agent.
    long_x, _ = synthetic_series(args.score_points, seed=1)
    t0 = time.perf_counter()
    scores = det.score(long_x)
    t_score = time.perf_counter() - t0
    print(f"score {len(long_x):,} points (batch {det.score_batch}): {t_score:.1f} s (target <= 20 s); "
          f"finite: {bool(np.isfinite(scores).all())}")


if __name__ == "__main__":
    main()
