"""Import time and peak memory: the largest KPI series and a synthetic 3,000,000-point series.

Usage: .venv/bin/python scripts/measure_import.py [--shared ../shared/data]
Each import runs `anomaloop import` in a fresh process on a fresh SQLite database; peak RSS is that process's
(wait4 on the child), so it includes Python, pandas and SQLAlchemy themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_import(path: Path, workdir: Path, *extra: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `anomaloop import` process (its own rusage, via wait4)."""
    env = dict(os.environ, ANOMALOOP_DATA_DIR=str(workdir))
    subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "import", str(path), "--dataset", "m", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"import failed: {proc.stderr.read().decode() if proc.stderr else status}")
    return seconds, usage.ru_maxrss / 1024


GENERATE = """
import sys

import numpy as np
import pandas as pd

path, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
pd.DataFrame({
    "timestamp": pd.date_range("2020-01-01", periods=n, freq="s").strftime("%Y-%m-%dT%H:%M:%S"),
    "value": np.cumsum(rng.normal(size=n)).round(6),
    "label": (rng.random(n) < 0.01).astype(int),
}).to_csv(path, index=False)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    manifest = json.loads((args.shared / "manifest.json").read_text())["files"]
    kpi = max((f for f in manifest if f["dataset"] == "kpi"), key=lambda f: f["n_points"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        s, mb = run_import(args.shared / kpi["path"], tmp_path / "a")
        rows.append((f"KPI {kpi['series']} ({kpi['n_points']:,} points, csv.gz)", s, mb))
        n = 3_000_000
        big = tmp_path / "synthetic-3M.csv"
        # written by a child process: a forked child's peak RSS starts from its parent's, so this one stays small
        subprocess.run([sys.executable, "-c", GENERATE, str(big), str(n)], check=True)
        s, mb = run_import(big, tmp_path / "b")
        rows.append((f"synthetic random walk ({n:,} points, csv, ISO timestamps, labels)", s, mb))
    print("| series | import seconds | peak RSS of the import process (MB) |")
    print("|---|---:|---:|")
    for name, s, mb in rows:
        print(f"| {name} | {s:.1f} | {mb:.0f} |")


if __name__ == "__main__":
    main()
