"""Render bench JSON results as markdown tables and an offline HTML report with learning curves."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.bench.baselines import REFERENCE_DETECTORS
from app.bench.runner import SCHEMA, pooled

TABLE_METRICS = (
    ("pr_auc", "PR-AUC"),
    ("roc_auc", "ROC-AUC"),
    ("vus_pr", "VUS-PR"),
    ("best_f1", "best-F1 (oracle thr.)"),
    ("f1_deployable", "F1 (label thr.)"),
    ("f1_pa", "F1-PA"),
    ("pa_k_auc", "PA%K-AUC"),
)


def load_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read bench JSON files and merge runs that differ only in their seeds (:func:`merge_seed_runs`);
    a ``ValueError`` names any file that is not a bench result."""
    out = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p} is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            got = doc.get("schema") if isinstance(doc, dict) else None
            raise ValueError(f"{p} is not an anomaloop bench result (schema {got!r})")
        doc["_path"] = str(p)
        out.append(doc)
    return merge_seed_runs(out)


def _run_identity(doc: dict[str, Any]) -> str:
    """What makes two runs the same experiment: the whole config but the seeds, and the series run."""
    cfg = {k: v for k, v in doc["config"].items() if k != "seeds"}
    series = sorted({r["series"] for r in doc["series"]})
    return json.dumps([cfg, series], sort_keys=True)


def merge_seed_runs(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge runs of one experiment made with different seeds (e.g. one process per seed, in parallel)
    into one document whose ``pooled`` block is mean ± std over all their seeds.

    Runs are the same experiment when their configs (seeds aside) and series sets are equal. Two runs
    of the same experiment sharing a seed are an error (which one to keep is not ours to guess).
    Order follows the first file of each experiment.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        groups.setdefault(_run_identity(doc), []).append(doc)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        seen: dict[int, str] = {}
        for doc in group:
            for s in {r["seed"] for r in doc["series"]}:
                if s in seen:
                    raise ValueError(f"{seen[s]} and {doc['_path']} both ran seed {s} of the same experiment")
                seen[s] = doc["_path"]
        records = [r for doc in group for r in doc["series"]]
        merged = dict(group[0])
        merged["series"] = records
        merged["pooled"] = pooled(records)
        merged["config"] = {**group[0]["config"], "seeds": sorted(seen)}
        merged["_path"] = " + ".join(d["_path"] for d in group)
        merged["merged_from"] = [
            {
                "path": d["_path"],
                "git_revision": d.get("git_revision"),
                "created": d.get("created"),
                "wall_seconds": d.get("wall_seconds"),
            }
            for d in group
        ]
        merged["wall_seconds"] = sum(float(d.get("wall_seconds") or 0.0) for d in group)
        merged["peak_rss_mb"] = max(float(d.get("peak_rss_mb") or 0.0) for d in group)
        out.append(merged)
    return out


def budget_label(budget: float) -> str:
    if budget == 0:
        return "0 (unsup.)"
    if budget < 1:
        return f"{budget * 100:g} %"
    return f"{int(budget)} labels"


def _fmt(block: dict[str, Any], key: str, digits: int = 3) -> str:
    v = block.get(key)
    if v is None:
        return "–"
    if len(v.get("per_seed", [])) > 1:
        return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"
    return f"{v['mean']:.{digits}f}"


def rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (result file, data set): the pooled block plus run identity, sorted for tables."""
    out = []
    for doc in results:
        cfg = doc["config"]
        for ds, block in doc["pooled"].items():
            if ds == "all":
                continue  # per data set rows only: a mean over a mix of data sets hides more than it says
            name = cfg["detector"] + (f" [{cfg['tag']}]" if cfg.get("tag") else "")
            out.append(
                {
                    "dataset": ds,
                    "detector": name,
                    "strategy": cfg["strategy"],
                    "budget": float(cfg["budget"]),
                    "block": block,
                    "doc": doc,
                }
            )
    out.sort(key=lambda r: (r["dataset"], r["budget"], r["detector"], r["strategy"]))
    return out


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: a quality table per data set and a cost table (labels, seconds, memory)."""
    lines: list[str] = []
    by_ds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows(results):
        by_ds[r["dataset"]].append(r)
    for ds, rs in by_ds.items():
        lines.append(f"### {ds}\n")
        head = ["detector", "strategy", "budget", "series", "seeds", *[t for _, t in TABLE_METRICS], "labels used"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in rs:
            b = r["block"]
            cells = [
                r["detector"],
                r["strategy"] if r["budget"] else "–",
                budget_label(r["budget"]),
                str(b["n_series"]),
                str(len(b["seeds"])),
                *[_fmt(b, k) for k, _ in TABLE_METRICS],
                _fmt(b, "labels_used", 1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("### Cost (mean per series)\n")
    head = ["data set", "detector", "budget", "fit s", "feedback s", "score s", "peak RSS MB", "device", "wall s"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in rows(results):
        b, doc = r["block"], r["doc"]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["dataset"],
                    r["detector"],
                    budget_label(r["budget"]),
                    _fmt(b, "fit_seconds", 2),
                    _fmt(b, "feedback_seconds", 2),
                    _fmt(b, "score_seconds", 2),
                    f"{doc['peak_rss_mb']:.0f}",
                    doc["device"],
                    f"{doc['wall_seconds']:.0f}",
                ]
            )
            + " |"
        )
    lines.append("")
    return "\n".join(lines)


def learning_curves(results: Sequence[dict[str, Any]], metric: str = "pr_auc") -> dict[str, dict[str, list]]:
    """Per data set, per ``detector (strategy)``: points (mean labels used, mean metric) over budgets."""
    curves: dict[str, dict[str, list[tuple[float, float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows(results):
        b = r["block"]
        name = r["detector"] if r["detector"] in REFERENCE_DETECTORS else (f"{r['detector']} ({r['strategy']})")
        curves[r["dataset"]][name].append((b["labels_used"]["mean"], b[metric]["mean"], b[metric]["std"]))
    return {ds: {k: sorted(v) for k, v in d.items()} for ds, d in curves.items()}


def html_report(results: Sequence[dict[str, Any]], path: str | Path, metric: str = "pr_auc") -> Path:
    """Write a self-contained HTML file (plotly.js inlined: opens offline) with learning curves and tables."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    curves = learning_curves(results, metric)
    datasets = sorted(curves)
    cols = min(3, max(1, len(datasets)))
    nrows = -(-len(datasets) // cols) if datasets else 1
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=datasets or ["(no results)"])
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    names = sorted({n for d in curves.values() for n in d})
    color = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    for i, ds in enumerate(datasets):
        row, col = i // cols + 1, i % cols + 1
        for name, pts in sorted(curves[ds].items()):
            xs, ys, es = zip(*pts, strict=True)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    error_y={"type": "data", "array": es, "visible": True},
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=i == 0,
                    line={"color": color[name]},
                ),
                row=row,
                col=col,
            )
        fig.update_xaxes(title_text="labels used (mean per series)", row=row, col=col)
        fig.update_yaxes(title_text=metric, row=row, col=col)
    fig.update_layout(height=380 * nrows, title=f"anomaloop bench — {metric} vs labels used")
    body = fig.to_html(full_html=False, include_plotlyjs=True)
    table = markdown(results).replace("&", "&amp;").replace("<", "&lt;")
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>anomaloop bench</title></head><body>"
        f"{body}<h2>Tables</h2><pre>{table}</pre></body></html>"
    )
    out = Path(path)
    out.write_text(html, encoding="utf-8")
    return out
