"""RLAD with and without its agent gate on real slices: what serves after margin rounds, against the warm-up forest.

    .venv/bin/python scripts/measure_rlad_gate.py --data-root ../shared/data [--sets kpi,smd] [--seeds 0,1]

Each slice is split 70/30 in time; the detector fits on the first part, asks its warm-up windows, then two margin
rounds up to 2 % of the windows, each answer revealing its window's end point (RLAD's rule); PR-AUC is measured on
the last 30 %. Printed as a Markdown table: the forest alone (before any answer), the served model with the gate
(``agent_gate=True``, the default) and without it, and the gate's last figures (agent vs forest agreement on answers
the cross-fitted agents did not learn). No timing is read from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from app.core.metrics import pr_auc
from app.core.rlad.detector import RLADDetector
from app.core.windows import LabeledRange, window_ends

SLICES = {
    "kpi": ("kpi/a8c06b47-cc41-3738-9110-12df0ee4c721.csv.gz", slice(0, 8000)),
    "smd": ("smd/machine-1-2.test.csv.gz", slice(13_000, None)),
}


def load(root: Path, relpath: str, part: slice) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(root / relpath)
    y = df["label"].to_numpy().astype(int)[part]
    x = df.drop(columns=[c for c in ("timestamp", "label", "changepoint") if c in df.columns]).to_numpy(np.float32)
    return x[part], y


def answers(det: RLADDetector, windows: list[int], y: np.ndarray) -> list[LabeledRange]:
    ends = window_ends(len(y), det.window, det.stride)
    return [LabeledRange(int(ends[i]), int(ends[i]) + 1, int(y[ends[i]])) for i in windows]


def margin_rounds(det: RLADDetector, x: np.ndarray, y: np.ndarray, budget: float = 0.02, rounds: int = 2) -> int:
    """Warm-up answers, then ``rounds`` rounds of the smallest margins up to ``budget`` of the windows."""
    n_windows = det.n_windows(len(x))
    asked = set(det.initial_queries(x).tolist())
    det.feedback(x, answers(det, sorted(asked), y))
    per_round = max(1, (int(budget * n_windows) - len(asked)) // rounds)
    for _ in range(rounds):
        margin = det.margins(x)
        margin[sorted(asked)] = np.inf
        asked.update(np.argsort(margin, kind="stable")[:per_round].tolist())
        det.feedback(x, answers(det, sorted(asked), y))
    return len(asked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--sets", default="kpi,smd")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    print("| slice | seed | answers | forest | served, gate on | gate: agent vs forest (needed) | served, gate off |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets.split(","):
        x, y = load(args.data_root, *SLICES[name])
        cut = int(0.7 * len(x))
        x_fit, y_fit, x_eval, y_eval = x[:cut], y[:cut], x[cut:], y[cut:]
        for seed in (int(s) for s in args.seeds.split(",")):
            row = [name, str(seed)]
            forest = RLADDetector(device="cpu", seed=seed).fit(x_fit)
            figures = {}
            for gate in (True, False):
                det = RLADDetector(device="cpu", seed=seed, agent_gate=gate).fit(x_fit)
                asked = margin_rounds(det, x_fit, y_fit)
                figures[gate] = pr_auc(det.score(x_eval), y_eval)
                if gate:
                    g = det.last_round_.get("gate", {})
                    said = (
                        f"{g['agent_figure']:.3f} vs {g['forest_figure']:.3f} (+{g['needed_gain']:.3f})"
                        if "agent_figure" in g
                        else g.get("skipped", "not run")
                    )
            row += [str(asked), f"{pr_auc(forest.score(x_eval), y_eval):.3f}", f"{figures[True]:.3f}", said]
            row.append(f"{figures[False]:.3f}")
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
