"""Read labeled series in the ``shared/data`` format (or any CSV with a 0/1 ``label`` column).

A *series* is either one file ``<name>.csv[.gz]`` (no split: nab, kpi, skab) or a pair
``<name>.train.csv[.gz]`` + ``<name>.test.csv[.gz]`` (smd, asd, smap). Channels are every numeric
column except ``timestamp``, ``label`` and ``changepoint`` (skab's extra column, not a channel).
Missing values are filled forward, then backward, then with 0, because real exports have holes and
the detectors refuse NaN.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

NON_CHANNEL_COLUMNS = ("timestamp", "label", "changepoint")
_SUFFIX = re.compile(r"\.csv(\.gz)?$")
_SPLIT = re.compile(r"^(?P<name>.+)\.(?P<part>train|test)$")


@dataclass(frozen=True)
class SeriesFiles:
    """Where one series lives: ``test`` is the only file for a series without a split."""

    dataset: str
    name: str
    test: Path
    train: Path | None = None

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.name}"


@dataclass
class LoadedSeries:
    """A series in memory. ``X``/``y`` is the labeled part (the only file, or the test file).

    ``X``: ``(n, C)`` float64 raw values; ``y``: ``(n,)`` int8 0/1; ``X_train``: ``(m, C)`` or None.
    ``sha256``: file name -> sha256 hex of the file bytes as read.
    """

    files: SeriesFiles
    X: np.ndarray
    y: np.ndarray
    X_train: np.ndarray | None = None
    channels: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.files.key


def _stem(path: Path) -> str:
    return _SUFFIX.sub("", path.name)


def discover(path: str | Path) -> list[SeriesFiles]:
    """Every series under ``path`` (a file, a data set folder, or a folder of data set folders).

    Sorted by data set then name so runs are reproducible. A ``.test`` file without its ``.train``
    file is an unsplit series; a lone ``.train`` file (no labels to evaluate) is ignored.
    """
    p = Path(path)
    if p.is_file():
        files = [p]
        dataset = p.parent.name
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and _SUFFIX.search(f.name))
        if not files:  # a folder of data sets: recurse one level
            return [s for sub in sorted(d for d in p.iterdir() if d.is_dir()) for s in discover(sub)]
        dataset = p.name
    else:
        raise FileNotFoundError(f"no such data file or folder: {p}")
    by_name: dict[str, dict[str, Path]] = {}
    for f in files:
        stem = _stem(f)
        m = _SPLIT.match(stem)
        if m:
            by_name.setdefault(m["name"], {})[m["part"]] = f
        else:
            by_name.setdefault(stem, {})["all"] = f
    out: list[SeriesFiles] = []
    for name, parts in sorted(by_name.items()):
        if "all" in parts:
            if p.is_dir() and not has_label_column(parts["all"]):
                continue  # metadata next to the series (smap's labeled_anomalies.csv), not a series
            out.append(SeriesFiles(dataset, name, parts["all"]))
        elif "test" in parts:
            if p.is_file() and "train" not in parts:  # a single test file given: look for its sibling
                sibling = [s for s in p.parent.glob(f"{name}.train.csv*") if _SUFFIX.search(s.name)]
                parts["train"] = sibling[0] if sibling else None  # type: ignore[assignment]
            out.append(SeriesFiles(dataset, name, parts["test"], parts.get("train")))
    return out


def has_label_column(path: Path) -> bool:
    """Whether the CSV's header names a ``label`` column."""
    return "label" in pd.read_csv(path, nrows=0).columns


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_csv(path: Path, nrows: int | None = None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """``(X (n, C) float64, y (n,) int8 or None, channel names)`` from one CSV file."""
    df = pd.read_csv(path, nrows=nrows)
    y = None
    if "label" in df.columns:
        lab = pd.to_numeric(df["label"], errors="coerce").fillna(0).to_numpy()
        if not np.isin(lab, (0, 1)).all():
            raise ValueError(f"{path}: the label column must hold 0/1 values")
        y = lab.astype(np.int8)
    chans = df.drop(columns=[c for c in NON_CHANNEL_COLUMNS if c in df.columns])
    chans = chans.apply(pd.to_numeric, errors="coerce")
    chans = chans.loc[:, chans.notna().any()]  # text columns (ids, comments) are not channels
    if chans.shape[1] == 0:
        raise ValueError(f"{path}: no numeric channel column")
    X = chans.ffill().bfill().fillna(0.0).to_numpy(np.float64)
    return X, y, [str(c) for c in chans.columns]


def load(files: SeriesFiles, nrows: int | None = None) -> LoadedSeries:
    """Read a series; ``nrows`` keeps only the first rows of each file (for quick runs)."""
    X, y, channels = read_csv(files.test, nrows)
    if y is None:
        raise ValueError(f"{files.test}: no 'label' column, nothing to evaluate against")
    sha = {files.test.name: sha256_file(files.test)}
    X_train = None
    if files.train is not None:
        X_train, _, train_channels = read_csv(files.train, nrows)
        if train_channels != channels:
            raise ValueError(f"{files.train}: channels differ from {files.test.name}")
        sha[files.train.name] = sha256_file(files.train)
    return LoadedSeries(files, X, y, X_train, channels, sha)
