"""Pivot tables of bench results by variant (``--tag``): rows = (data set, detector), columns = tags.

Used for seed 002's comparison (w/o unlabeled, w/ unlabeled, with feedback) and for ablations, where
the runs differ in a protocol switch or a detector parameter rather than in the budget.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def _cell(block: dict[str, Any], metric: str) -> tuple[float, str]:
    v = block[metric]
    text = f"{v['mean']:.3f}" + (f" ± {v['std']:.3f}" if len(v.get("per_seed", [])) > 1 else "")
    return float(v["mean"]), text


def pivot(
    results: Sequence[dict[str, Any]], metric: str = "pr_auc", base: str | None = None, scale: float = 1.0
) -> str:
    """Markdown: one table per data set, a row per detector, a column per tag (in first-seen order).

    ``base``: a tag; when given, every other cell also shows its difference to that column, times
    ``scale`` (e.g. 100 for PA%K-AUC points). Untagged runs are named by their strategy and budget.
    """
    tags: list[str] = []
    cells: dict[str, dict[str, dict[str, tuple[float, str, int]]]] = defaultdict(lambda: defaultdict(dict))
    for doc in results:
        cfg = doc["config"]
        tag = cfg.get("tag") or f"{cfg['strategy']} {cfg['budget']:g}"
        if tag not in tags:
            tags.append(tag)
        for ds, block in doc["pooled"].items():
            if ds == "all":
                continue
            mean, text = _cell(block, metric)
            cells[ds][cfg["detector"]][tag] = (mean, text, int(block["n_series"]))
    lines: list[str] = []
    for ds in sorted(cells):
        lines.append(f"#### {ds} — {metric}\n")
        head = ["detector", "series", *tags]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for det in sorted(cells[ds]):
            row = cells[ds][det]
            n = max(c[2] for c in row.values())
            out = [det, str(n)]
            for t in tags:
                if t not in row:
                    out.append("–")
                    continue
                mean, text, _ = row[t]
                if base is not None and t != base and base in row:
                    text += f" ({(mean - row[base][0]) * scale:+.{1 if scale >= 10 else 3}f})"
                out.append(text)
            lines.append("| " + " | ".join(out) + " |")
        lines.append("")
    return "\n".join(lines)
