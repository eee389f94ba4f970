"""``bench efficiency`` and the merging of runs made one seed per process: known answers on small documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.bench.cli import bench_app
from app.bench.efficiency import markdown
from app.bench.report import load_results
from app.bench.runner import METRIC_KEYS, SCHEMA, pooled

runner = CliRunner()


def _record(series: str, seed: int, pr_auc: float, labels: int) -> dict:
    metrics = {k: 0.5 for k in METRIC_KEYS}
    metrics["pr_auc"] = pr_auc
    return {"series": series, "dataset": "toy", "seed": seed, "n_points": 100, "metrics": metrics,
            "labels_used": labels, "fit_seconds": 1.0, "feedback_seconds": 0.0, "score_seconds": 0.1}


def _doc(path: Path, detector: str, budget: float, records: list[dict], strategy: str = "hybrid") -> Path:
    seeds = sorted({r["seed"] for r in records})
    doc = {"schema": SCHEMA, "config": {"detector": detector, "strategy": strategy, "budget": budget,
                                        "seeds": seeds, "tag": None, "params": {}},
           "series": records, "pooled": pooled(records), "device": "cpu", "peak_rss_mb": 100.0,
           "wall_seconds": 2.0, "git_revision": "abc"}
    path.write_text(json.dumps(doc))
    return path


def test_runs_of_one_experiment_with_different_seeds_merge_into_mean_and_std(tmp_path: Path):
    a = _doc(tmp_path / "a.json", "usad", 0.01, [_record("s1", 0, 0.2, 3), _record("s2", 0, 0.4, 5)])
    b = _doc(tmp_path / "b.json", "usad", 0.01, [_record("s1", 1, 0.6, 3), _record("s2", 1, 0.8, 5)])
    other = _doc(tmp_path / "c.json", "usad", 0.05, [_record("s1", 0, 0.9, 9), _record("s2", 0, 0.9, 9)])
    docs = load_results([a, b, other])
    assert len(docs) == 2  # the 5 % run is another experiment
    merged = docs[0]
    block = merged["pooled"]["toy"]
    assert block["seeds"] == [0, 1] and merged["config"]["seeds"] == [0, 1]
    assert block["pr_auc"]["per_seed"] == pytest.approx([0.3, 0.7])  # mean over series, per seed
    assert block["pr_auc"]["mean"] == pytest.approx(0.5) and block["pr_auc"]["std"] == pytest.approx(0.2)
    assert len(merged["series"]) == 4 and merged["wall_seconds"] == pytest.approx(4.0)

    dup = _doc(tmp_path / "d.json", "usad", 0.01, [_record("s1", 1, 0.1, 3), _record("s2", 1, 0.1, 5)])
    with pytest.raises(ValueError, match="both ran seed 1"):
        load_results([a, b, dup])


def test_efficiency_table_divides_by_the_best_unsupervised_run(tmp_path: Path):
    files = [
        _doc(tmp_path / "if.json", "iforest", 0, [_record("s1", 0, 0.25, 0)], strategy="top_k"),
        _doc(tmp_path / "ol.json", "oneliner", 0, [_record("s1", 0, 0.40, 0)], strategy="top_k"),
        _doc(tmp_path / "u0.json", "usad", 0, [_record("s1", 0, 0.20, 0)]),
        _doc(tmp_path / "u1.json", "usad", 0.01, [_record("s1", 0, 0.60, 7)]),
        _doc(tmp_path / "r1.json", "rlad", 0.01, [_record("s1", 0, 0.50, 7)], strategy="margin"),
    ]
    text = markdown(load_results(files), "pr_auc", (0.01,))
    assert "best unsupervised: oneliner 0.400" in text
    usad_row = next(line for line in text.splitlines() if line.startswith("| usad (hybrid)"))
    assert "| 0.200 |" in usad_row and "0.600 [7.0]" in usad_row and usad_row.endswith("| 1.50× |")
    assert "Best at 1 %: usad (hybrid) 0.600 = 1.50×" in text
    # the ratio to detectors only leaves the one-liner out of the reference
    text = markdown(load_results(files), "pr_auc", (0.01,), exclude_sanity=True)
    assert "sanity baselines aside: iforest 0.250" in text and "= 2.40×" in text

    result = runner.invoke(bench_app, ["efficiency", *map(str, files), "--ratio-at", "0.01"])
    assert result.exit_code == 0, result.output
    assert "| rlad (margin) | 1 |" in result.stdout and "1.25×" in result.stdout
    (tmp_path / "bad.json").write_text("not json")
    result = runner.invoke(bench_app, ["efficiency", str(tmp_path / "bad.json")])
    message = " ".join(result.output.replace("│", " ").split())  # rich wraps the error in a box
    assert result.exit_code != 0 and "bad.json is not JSON" in message
