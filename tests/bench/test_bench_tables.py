"""``bench efficiency``, the merging of runs made one seed per process (known answers on small documents),
``bench plan`` and ``make bench``'s script on a quick plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.bench.cli import bench_app
from app.bench.efficiency import markdown
from app.bench.report import load_results
from app.bench.runner import METRIC_KEYS, SCHEMA, pooled
from tests.conftest import _find_shared_data, service_unavailable

runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir() -> Path:
    shared = _find_shared_data()
    if not shared.is_dir():
        service_unavailable("real data (../shared/data)", f"not found at {shared}; set ANOMALOOP_SHARED_DATA")
    return shared


def _record(series: str, seed: int, pr_auc: float, labels: int) -> dict:
    metrics = {k: 0.5 for k in METRIC_KEYS}
    metrics["pr_auc"] = pr_auc
    return {
        "series": series,
        "dataset": "toy",
        "seed": seed,
        "n_points": 100,
        "metrics": metrics,
        "labels_used": labels,
        "fit_seconds": 1.0,
        "feedback_seconds": 0.0,
        "score_seconds": 0.1,
    }


def _doc(path: Path, detector: str, budget: float, records: list[dict], strategy: str = "hybrid") -> Path:
    seeds = sorted({r["seed"] for r in records})
    doc = {
        "schema": SCHEMA,
        "config": {
            "detector": detector,
            "strategy": strategy,
            "budget": budget,
            "seeds": seeds,
            "tag": None,
            "params": {},
        },
        "series": records,
        "pooled": pooled(records),
        "device": "cpu",
        "peak_rss_mb": 100.0,
        "wall_seconds": 2.0,
        "git_revision": "abc",
    }
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

    # an untagged variant of the same detector and budget would hide one of the two runs
    other = _doc(tmp_path / "u1b.json", "usad", 0.01, [_record("s1", 0, 0.10, 7)])
    other_doc = json.loads(other.read_text())
    other_doc["config"]["params"] = {"masking": False}
    other.write_text(json.dumps(other_doc))
    with pytest.raises(ValueError, match="give one of them a --tag"):
        markdown(load_results([*files, other]), "pr_auc", (0.01,))

    result = runner.invoke(bench_app, ["efficiency", *map(str, files), "--ratio-at", "0.01"])
    assert result.exit_code == 0, result.output
    assert "| rlad (margin) | 1 |" in result.stdout and "1.25×" in result.stdout
    (tmp_path / "bad.json").write_text("not json")
    result = runner.invoke(bench_app, ["efficiency", str(tmp_path / "bad.json")])
    message = " ".join(result.output.replace("│", " ").split())  # rich wraps the error in a box
    assert result.exit_code != 0 and "bad.json is not JSON" in message


def test_plan_lists_every_run_behind_the_tables():
    result = runner.invoke(
        bench_app,
        [
            "plan",
            "--sets",
            "asd",
            "--seeds",
            "0,1",
            "--detectors",
            "usad,rlad",
            "--budgets",
            "0,0.01",
            "--ablation-backbone",
            "usad",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    outs = [line.split("--out ")[1].split(".json")[0].rsplit("/", 1)[1] for line in lines]
    assert len(outs) == len(set(outs)), "two runs would write the same file"
    # seed 0: random, oneliner, iforest, usad 0 and 1 %, rlad 1 %, usad w/o unlabeled, 6 + 4 ablations;
    # seed 1: the same without the deterministic sanity baselines
    assert len([o for o in outs if o.endswith("_s0")]) == 7 + 10
    assert len([o for o in outs if o.endswith("_s1")]) == 5 + 10
    assert "asd_rlad_0_s0" not in outs  # unsupervised RLAD is its warm-up forest: iforest's row
    wo = next(line for line in lines if "asd_usad_wo_s0" in line)
    assert "--fit-with-pool" not in wo and "'w/o unlabeled'" in wo
    assert all("--fit-with-pool" in line for line in lines if "asd_usad_0.01_s0.json" in line)
    assert "feedback_loss=weighted_sum" in next(line for line in lines if "abl_asd_usad_wsum_s1" in line)
    result = runner.invoke(bench_app, ["plan", "--sets", "yahoo"])
    assert result.exit_code != 0 and "unknown data set" in result.output


def test_make_bench_script_runs_a_quick_plan_and_renders_the_tables(data_dir: Path, tmp_path: Path):
    env = {
        **os.environ,
        "BENCH_OUT": str(tmp_path),
        "ANOMALOOP": str(Path(sys.executable).parent / "anomaloop"),
        "BENCH_JOBS": "2",
    }
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench.sh"
    proc = subprocess.run(
        [
            "bash",
            str(script),
            "--data-root",
            str(data_dir),
            "--sets",
            "skab",
            "--seeds",
            "0",  # noqa: S603, S607
            "--detectors",
            "usad",
            "--budgets",
            "0,0.01",
            "--parts",
            "efficiency",
            "--quick",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len((tmp_path / "plan.txt").read_text().splitlines()) == 5
    assert not (tmp_path / "failed.txt").exists()
    tables = (tmp_path / "tables.md").read_text()
    assert "#### skab — pr_auc (best unsupervised:" in tables
    row = next(line for line in tables.splitlines() if line.startswith("| usad (hybrid) | 2 |"))
    assert row.count("×") == 1 and "[" in row  # the 1 % cell with its labels, and its ratio
    assert (tmp_path / "bench_report.html").stat().st_size > 1_000_000
