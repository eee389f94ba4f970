"""Fixtures for core tests: the real labeled data in ../shared/data (read-only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import _find_shared_data, service_unavailable

SHARED_DATA = _find_shared_data()


def load_series(relpath: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``shared/data/<relpath>`` as ``(X (n, C) float32, y (n,) int)``; first ``limit`` rows only."""
    df = pd.read_csv(SHARED_DATA / relpath, nrows=limit)
    y = df["label"].to_numpy().astype(int)
    x = df.drop(columns=[c for c in ("timestamp", "label", "changepoint") if c in df.columns]).to_numpy(np.float32)
    return x, y


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        service_unavailable("real data (../shared/data)", f"not found at {SHARED_DATA}; set ANOMALOOP_SHARED_DATA")
    return SHARED_DATA
