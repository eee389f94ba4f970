"""Time the detection core: scoring a long univariate series per detector, and one feedback round.

Usage::

    python scripts/speed_core.py                       # every non-RLAD detector, 1,000,000 points
    python scripts/speed_core.py --detectors ae lstm_ae --points 200000 --threads 1

The series is a noisy sine with spikes (synthetic, so the script needs no data files). Each detector
is fitted with its default hyperparameters on the first ``--fit-points`` points (fit time is
reported but not the target), then scores the whole series. With ``--answers F`` each detector whose feedback
learns from labels is first given ground-truth answers on windows covering ``F`` of its fit points (the scoring
then includes what the answers taught, e.g. the ensemble's false-alarm exemplars). The feedback row times one masked
minimax round of ``lstm_ae`` on a ``--feedback-points`` series with 2 % of its points labeled.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.detectors.registry import available_detectors, make_detector  # noqa: E402
from app.core.windows import LabeledRange  # noqa: E402


def synthetic_series(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy sine ``(n, 1)`` with a 20-point spike every 5,000 points, and its point labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.sin(2 * np.pi * t / 288) + 0.1 * rng.standard_normal(n)
    y = np.zeros(n, dtype=int)
    for start in range(2_500, n - 20, 5_000):
        x[start : start + 20] += 3.0
        y[start : start + 20] = 1
    return x[:, None].astype(np.float32), y


def label_ranges(y: np.ndarray, budget: float, window: int, seed: int = 0) -> list[LabeledRange]:
    """Ground-truth labels for random non-overlapping windows covering ``budget`` of the points, anomalies first."""
    rng = np.random.default_rng(seed)
    n_windows = len(y) // window
    n_label = max(1, int(budget * len(y)) // window)
    anomalous = [i for i in range(n_windows) if y[i * window : (i + 1) * window].any()]
    rest = [i for i in rng.permutation(n_windows) if i not in set(anomalous)]
    picked = (anomalous[: n_label // 2] + rest)[:n_label]
    ranges = []
    for i in picked:
        seg = y[i * window : (i + 1) * window]
        for j in range(window):  # one range per run of equal labels, so ranges stay per step
            if j == 0 or seg[j] != seg[j - 1]:
                start = j
            if j == window - 1 or seg[j + 1] != seg[j]:
                ranges.append(LabeledRange(i * window + start, i * window + j + 1, int(seg[j])))
    return ranges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = [d for d in available_detectors() if d != "rlad"]
    parser.add_argument("--detectors", nargs="+", default=default, help=f"default: {' '.join(default)}")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--fit-points", type=int, default=20_000)
    parser.add_argument("--feedback-points", type=int, default=100_000)
    parser.add_argument("--no-feedback", action="store_true")
    parser.add_argument("--answers", type=float, default=0.0, help="share of fit points answered before scoring")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default; 1 suits a shared box)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = synthetic_series(args.points)
    print(f"python {platform.python_version()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {args.device}, {args.points:,} points\n")
    print(f"| detector | fit s (first {args.fit_points:,} pts) | score s ({args.points:,} pts) | points/s |")
    print("|---|---:|---:|---:|")
    for name in args.detectors:
        det = make_detector(name, seed=0, device=args.device)
        t0 = time.perf_counter()
        det.fit(x[: args.fit_points])
        fit_s = time.perf_counter() - t0
        if args.answers > 0:
            t0 = time.perf_counter()
            det.feedback(x[: args.fit_points], label_ranges(y[: args.fit_points], args.answers, det.window))
            notes, _ = det.training_notes()
            print(f"{name}: answers on {args.answers:.0%} of the fit points learned in "
                  f"{time.perf_counter() - t0:.1f} s: {json.dumps(notes, default=str)}", flush=True)
        t0 = time.perf_counter()
        scores = det.score(x)
        score_s = time.perf_counter() - t0
        assert scores.shape == (len(x),) and np.isfinite(scores).all()
        print(f"| {name} | {fit_s:.1f} | {score_s:.1f} | {len(x) / score_s:,.0f} |", flush=True)

    if not args.no_feedback:
        xf, yf = synthetic_series(args.feedback_points, seed=1)
        det = make_detector("lstm_ae", seed=0, device=args.device).fit(xf[: args.fit_points])
        ranges = label_ranges(yf, 0.02, det.window)
        t0 = time.perf_counter()
        det.feedback(xf, ranges)
        fb_s = time.perf_counter() - t0
        res = det.last_feedback_
        print(f"\nlstm_ae feedback, {args.feedback_points:,} points, {len(ranges)} labeled ranges "
              f"({res.n_windows} labeled windows, {res.n_anomalous_steps} anomalous steps), "
              f"{res.epochs} epochs: {fb_s:.1f} s")


if __name__ == "__main__":
    main()
