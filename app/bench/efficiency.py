"""Label-efficiency tables: a metric against the label budget, per data set, with the ratio to the best
unsupervised run of the same results (issue 4's "≥ 1.6× at 1 %" is read off this table).

Rows are detectors (with their query strategy and ``--tag``), columns are budgets. A budget-0 run is
unsupervised; the best of them on a data set is the reference every labeled cell is divided by.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.bench.baselines import BASELINES, REFERENCE_DETECTORS
from app.bench.report import budget_label

BASELINE_NAMES = REFERENCE_DETECTORS
SANITY_NAMES = tuple(BASELINES)
"""The protocol's sanity baselines: reported, and by default in the reference, since a data set that a
one-liner solves is a fact about the data set; ``exclude_sanity`` shows the ratio to detectors only."""


@dataclass(frozen=True)
class Cell:
    mean: float
    std: float
    n_seeds: int
    labels: float
    n_series: int


def _row_name(cfg: dict[str, Any]) -> str:
    name = cfg["detector"]
    if name not in BASELINE_NAMES:
        name += f" ({cfg['strategy']})"
    if cfg.get("tag"):
        name += f" [{cfg['tag']}]"
    return name


def collect(results: Sequence[dict[str, Any]], metric: str) -> dict[str, dict[str, dict[float, Cell]]]:
    """``{data set: {row name: {budget: Cell}}}`` from merged bench documents.

    A budget-0 run of a detector that also has labeled runs belongs to that detector's row whatever
    strategy it records (no query is made at budget 0). Two runs landing in one cell (e.g. an ablation
    without a ``--tag``) are a ``ValueError``: the table would silently show one of them."""
    table: dict[str, dict[str, dict[float, Cell]]] = defaultdict(lambda: defaultdict(dict))
    labeled_rows: dict[tuple[str, str | None], str] = {}
    for doc in results:
        cfg = doc["config"]
        if float(cfg["budget"]) > 0:
            labeled_rows.setdefault((cfg["detector"], cfg.get("tag")), _row_name(cfg))
    source: dict[tuple[str, str, float], str] = {}
    for doc in results:
        cfg = doc["config"]
        budget = float(cfg["budget"])
        name = _row_name(cfg)
        if budget == 0:
            name = labeled_rows.get((cfg["detector"], cfg.get("tag")), name)
        for ds, block in doc["pooled"].items():
            if ds == "all":
                continue
            key = (ds, name, budget)
            if key in source:
                raise ValueError(
                    f"{source[key]} and {doc.get('_path', '?')} both give {name} at budget {budget:g} "
                    f"on {ds}; give one of them a --tag"
                )
            source[key] = doc.get("_path", "?")
            v = block[metric]
            table[ds][name][budget] = Cell(
                float(v["mean"]),
                float(v["std"]),
                len(v.get("per_seed", [])),
                float(block["labels_used"]["mean"]),
                int(block["n_series"]),
            )
    return table


def best_unsupervised(rows: dict[str, dict[float, Cell]], exclude_sanity: bool = False) -> tuple[str, Cell] | None:
    """The budget-0 cell with the highest mean; ``exclude_sanity`` leaves out the sanity baselines."""
    cands = [
        (name, cells[0.0])
        for name, cells in rows.items()
        if 0.0 in cells and not (exclude_sanity and name.split(" ")[0] in SANITY_NAMES)
    ]
    return max(cands, key=lambda nc: nc[1].mean) if cands else None


def markdown(
    results: Sequence[dict[str, Any]],
    metric: str = "pr_auc",
    ratio_at: Sequence[float] = (0.001, 0.01),
    exclude_sanity: bool = False,
) -> str:
    """One markdown table per data set: cells ``mean ± std [labels]``; a ratio column per ``ratio_at``
    budget (the row's cell over the best unsupervised cell) and a summary line under each table."""
    lines: list[str] = []
    table = collect(results, metric)
    for ds in sorted(table):
        rows = table[ds]
        budgets = sorted({b for cells in rows.values() for b in cells})
        ref = best_unsupervised(rows, exclude_sanity)
        head = ["detector", "series", *[f"B = {budget_label(b)}" for b in budgets]]
        ratios = [b for b in ratio_at if b in budgets] if ref else []
        head += [f"ratio at {budget_label(b)}" for b in ratios]
        ref_text = f"{ref[0]} {ref[1].mean:.3f}" if ref else "none run"
        kind = "best unsupervised detector, sanity baselines aside" if exclude_sanity else "best unsupervised"
        lines.append(f"#### {ds} — {metric} ({kind}: {ref_text})\n")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for name in sorted(rows, key=lambda n: (n.split(" ")[0] not in BASELINE_NAMES, n)):
            cells = rows[name]
            n_series = sorted({c.n_series for c in cells.values()})
            out = [name, "/".join(map(str, n_series))]
            for b in budgets:
                c = cells.get(b)
                if c is None:
                    out.append("–")
                    continue
                text = f"{c.mean:.3f}" + (f" ± {c.std:.3f}" if c.n_seeds > 1 else "")
                if b > 0:
                    text += f" [{c.labels:.1f}]"
                out.append(text)
            for b in ratios:
                c = cells.get(b)
                out.append(f"{c.mean / ref[1].mean:.2f}×" if c is not None and ref[1].mean > 0 else "–")
            lines.append("| " + " | ".join(out) + " |")
        for b in ratios:
            cands = [(n, c[b]) for n, c in rows.items() if b in c]
            if cands and ref[1].mean > 0:
                name, c = max(cands, key=lambda nc: nc[1].mean)
                lines.append(
                    f"\nBest at {budget_label(b)}: {name} {c.mean:.3f} = {c.mean / ref[1].mean:.2f}× "
                    f"the best unsupervised ({ref_text})."
                )
        lines.append("")
    return "\n".join(lines)
