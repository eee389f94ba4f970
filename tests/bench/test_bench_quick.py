"""Smoke test of ``anomaloop bench``: ``run --quick`` on real slices, the JSON schema, ``table`` and the HTML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from app.bench.cli import bench_app
from app.bench.data import discover
from app.bench.runner import METRIC_KEYS, SCHEMA
from tests.conftest import _find_shared_data, service_unavailable

SHARED_DATA = _find_shared_data()

RECORD_KEYS = {
    "series",
    "dataset",
    "seed",
    "n_points",
    "n_fit",
    "n_channels",
    "pool",
    "evaluation",
    "eval_anomaly_rate",
    "metrics",
    "labels_used",
    "oracle_labels",
    "detector_labels_seen",
    "points_revealed",
    "warmup_labels",
    "budget_labels",
    "rounds",
    "curve",
    "fit_seconds",
    "feedback_seconds",
    "score_seconds",
    "wall_seconds",
    "peak_rss_mb",
    "params",
    "files",
}

runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        service_unavailable("real data (../shared/data)", f"not found at {SHARED_DATA}; set ANOMALOOP_SHARED_DATA")
    return SHARED_DATA


def _run(args: list[str]) -> dict:
    result = runner.invoke(bench_app, ["run", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _check_doc(doc: dict, detector: str, budget: float) -> None:
    assert doc["schema"] == SCHEMA
    assert doc["config"]["detector"] == detector and doc["config"]["budget"] == budget
    assert doc["series"], "no series ran"
    for rec in doc["series"]:
        assert set(rec) >= RECORD_KEYS, RECORD_KEYS - set(rec)
        m = rec["metrics"]
        for key in METRIC_KEYS:
            assert 0.0 <= m[key] <= 1.0, (key, m[key])
        assert m["best_f1_is_oracle"] is True
        assert m["f1_deployable"] <= m["best_f1"] + 1e-12  # the oracle threshold is an upper bound
        assert rec["labels_used"] == rec["oracle_labels"] <= rec["budget_labels"]
        # the pool and the evaluation part never overlap; evaluation is the end of the series
        (_, p1), (e0, e1) = rec["pool"], rec["evaluation"]
        assert p1 <= e0 and e1 == rec["n_points"]
        assert rec["curve"][0]["round"] == 0 and len(rec["curve"]) == rec["rounds"] + 1
        assert all(len(h) == 64 for h in rec["files"].values())
    pooled = doc["pooled"]["all"]
    assert pooled["n_series"] == len({r["series"] for r in doc["series"]})
    assert set(METRIC_KEYS) <= set(pooled)


def test_quick_unsupervised_and_with_labels_then_table(data_dir: Path, tmp_path: Path):
    out0 = tmp_path / "rollingz.json"
    _run(
        [
            "--data",
            str(data_dir / "nab"),
            "--data",
            str(data_dir / "asd"),
            "--detector",
            "rollingz",
            "--quick",
            "--out",
            str(out0),
        ]
    )
    doc0 = json.loads(out0.read_text())
    _check_doc(doc0, "rollingz", 0.0)
    assert {r["dataset"] for r in doc0["series"]} == {"nab", "asd"}
    assert all(r["labels_used"] == 0 and r["rounds"] == 0 for r in doc0["series"])
    assert all(r["n_fit"] > 0 for r in doc0["series"])

    out1 = tmp_path / "iforest.json"
    _run(
        [
            "--data",
            str(data_dir / "nab"),
            "--detector",
            "iforest",
            "--budget",
            "12",
            "--round-size",
            "5",
            "--seed",
            "0",
            "--seed",
            "1",
            "--threshold-method",
            "best_f1",
            "--quick",
            "--out",
            str(out1),
        ]
    )
    doc1 = json.loads(out1.read_text())
    _check_doc(doc1, "iforest", 12.0)
    assert doc1["config"]["threshold_method"] == "best_f1"
    for rec in doc1["series"]:  # the served threshold as such a project chooses it (not the default)
        assert rec["metrics"]["threshold_method"] in ("best_f1_on_labels", "percentile_99_pool")
        assert rec["labels_used"] == 12 and rec["rounds"] == 3
        assert [c["labels_used"] for c in rec["curve"]] == [0, 5, 10, 12]
        assert "nothing serves yet" in rec["curve"][0]["reason"]  # round 0 judged as a project's first version
        for c in rec["curve"]:  # each round says why its candidate served or not, with the guard's figures
            assert c["reason"] and 0.0 <= c["flag_share"] <= 1.0 and c["flag_limit"] >= 0.05 and c["anomaly_rate"] >= 0
            # no threshold flags more than the guard allows: raised to the limit when its labels chose a lower one
            assert c["flag_share"] <= c["flag_limit"]
            assert (c["raised_from"] is None) == ("its threshold was raised" not in c["reason"])
    assert doc1["pooled"]["all"]["pr_auc"]["per_seed"] and len(doc1["pooled"]["all"]["seeds"]) == 2

    html = tmp_path / "report.html"
    result = runner.invoke(bench_app, ["table", str(out0), str(out1), "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert "| rollingz |" in result.stdout and "| iforest |" in result.stdout
    assert "### nab" in result.stdout and "### asd" in result.stdout
    text = html.read_text()
    assert "plotly" in text.lower() and len(text) > 1_000_000  # plotly.js inlined: opens offline


def test_any_csv_with_a_label_column(tmp_path: Path):
    rng = np.random.default_rng(0)
    n = 600
    x = rng.standard_normal((n, 2))
    y = np.zeros(n, dtype=int)
    y[[450, 500]] = 1  # two one-point spikes in the evaluated last 40 %
    x[[450, 500]] += 8.0
    x[100, 0] = np.nan  # real exports have holes
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "note": "x", "label": y}).to_csv(tmp_path / "mine.csv", index=False)
    assert [s.name for s in discover(tmp_path)] == ["mine"]
    result = _run(["--data", str(tmp_path / "mine.csv"), "--detector", "oneliner"])
    doc = json.loads(result.stdout)
    rec = doc["series"][0]
    assert rec["n_channels"] == 2 and rec["metrics"]["pr_auc"] >= 0.45  # |Δx| ranks each spike
    # in its top 2 (the spike and the step back down): AP >= (1/2 + 2/4) / 2


def test_a_project_of_each_paths_series(data_dir: Path, tmp_path: Path):
    """--project: the series kept under each --data path form one project — one budget of answers spent across them,
    one threshold, each series evaluated on its own part; a path whose series differ in channels is refused."""
    out = tmp_path / "project.json"
    args = ["--data", str(data_dir / "nab"), "--data", str(data_dir / "asd"), "--detector", "iforest", "--quick"]
    _run([*args, "--budget", "12", "--rounds", "3", "--project", "--out", str(out)])
    doc = json.loads(out.read_text())
    _check_doc(doc, "iforest", 12.0)
    assert doc["config"]["project"] is True
    for dataset in ("nab", "asd"):
        recs = [r for r in doc["series"] if r["dataset"] == dataset]
        assert len(recs) == 2 and all(r["project"]["series"] == [x["series"] for x in recs] for r in recs)
        assert sum(r["labels_used"] for r in recs) == recs[0]["project"]["answers"] == 12  # one budget for both
        assert all(r["budget_labels"] == 12 for r in recs)
        assert len({r["metrics"]["deployable_threshold"] for r in recs}) == 1  # one served threshold
        assert recs[0]["curve"] != recs[1]["curve"]  # each series' own figures
        for r in recs:
            assert r["labels_used"] == r["oracle_labels"]

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    rng = np.random.default_rng(0)
    for name, width in (("one", 1), ("two", 2)):
        y = np.zeros(400, dtype=int)
        y[[300, 350]] = 1
        frame = pd.DataFrame(rng.standard_normal((400, width)), columns=[f"c{j}" for j in range(width)])
        frame.assign(label=y).to_csv(mixed / f"{name}.csv", index=False)
    result = runner.invoke(bench_app, ["run", "--data", str(mixed), "--detector", "oneliner", "--project"])
    assert result.exit_code == 2 and "must have the same number of channels" in result.output


def test_bad_inputs_fail_with_a_message(tmp_path: Path):
    result = runner.invoke(bench_app, ["run", "--data", str(tmp_path / "missing"), "--detector", "oneliner"])
    assert result.exit_code != 0
    result = runner.invoke(bench_app, ["run", "--data", str(tmp_path), "--detector", "nope"])
    assert result.exit_code != 0 and "unknown detector" in result.output
    result = runner.invoke(bench_app, ["run", "--data", str(tmp_path), "--detector", "knn", "--param", "k=0"])
    assert result.exit_code == 2 and "k must be a whole number in [1, inf), not 0" in result.output
    result = runner.invoke(
        bench_app, ["run", "--data", str(tmp_path), "--detector", "knn", "--threshold-method", "otsu"]
    )
    assert result.exit_code == 2 and "--threshold-method must be one of" in result.output
    (tmp_path / "x.json").write_text("{}")
    result = runner.invoke(bench_app, ["table", str(tmp_path / "x.json")])
    assert result.exit_code != 0


def test_fit_with_pool_appends_the_pool_to_a_train_test_pair(tmp_path: Path):
    """002's 'w/ unlabeled' arm: fit on train ∪ pool (unlabeled); evaluation and pool unchanged; the z-score
    still from train; a no-op for a one-file series; --tag shows in `bench table`."""
    from app.bench.data import load
    from app.bench.protocol import ProtocolConfig, make_split

    rng = np.random.default_rng(1)
    train, test = rng.standard_normal((300, 2)), rng.standard_normal((200, 2)) + 5.0
    y = np.zeros(200, dtype=int)
    y[[40, 150]] = 1
    pair = tmp_path / "pair"
    pair.mkdir()
    pd.DataFrame({"a": train[:, 0], "b": train[:, 1], "label": 0}).to_csv(pair / "s.train.csv", index=False)
    pd.DataFrame({"a": test[:, 0], "b": test[:, 1], "label": y}).to_csv(pair / "s.test.csv", index=False)
    (files,) = discover(pair)
    series = load(files)
    base = make_split(series, ProtocolConfig(pool_frac=0.3))
    wu = make_split(series, ProtocolConfig(pool_frac=0.3, fit_with_pool=True))
    assert base is not None and wu is not None
    assert len(base.X_fit) == 300 and len(wu.X_fit) == 300 + 60
    np.testing.assert_array_equal(wu.X_fit[:300], base.X_fit)
    np.testing.assert_array_equal(wu.X_fit[300:], base.X[:60])  # the pool, on train's z-score
    assert abs(float(base.X_fit.mean())) < 1e-9 and float(wu.X_fit[300:].mean()) > 3.0
    assert wu.pool == base.pool and wu.evaluation == base.evaluation
    np.testing.assert_array_equal(wu.y, base.y)

    one = tmp_path / "one"
    one.mkdir()
    pd.DataFrame({"a": rng.standard_normal(200), "label": np.r_[np.zeros(150, int), 1, np.zeros(49, int)]}).to_csv(
        one / "u.csv", index=False
    )
    (f1,) = discover(one)
    s1 = load(f1)
    np.testing.assert_array_equal(make_split(s1, ProtocolConfig(fit_with_pool=True)).X_fit, make_split(s1).X_fit)

    out = tmp_path / "wu.json"
    _run(["--data", str(pair), "--detector", "rollingz", "--fit-with-pool", "--tag", "w/ unl", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["config"]["protocol"]["fit_with_pool"] is True and doc["config"]["tag"] == "w/ unl"
    assert doc["series"][0]["n_fit"] == 360
    result = runner.invoke(bench_app, ["table", str(out), "--no-html"])
    assert result.exit_code == 0 and "| rollingz [w/ unl] |" in result.stdout
    out0 = tmp_path / "wo.json"
    _run(["--data", str(pair), "--detector", "rollingz", "--tag", "w/o", "--out", str(out0)])
    result = runner.invoke(bench_app, ["compare", str(out0), str(out), "--base", "w/o", "--metric", "pr_auc"])
    assert result.exit_code == 0, result.output
    assert "| detector | series | w/o | w/ unl |" in result.stdout and "| rollingz | 1 |" in result.stdout
    assert "(+" in result.stdout or "(-" in result.stdout  # the w/ unl cell carries its difference to w/o
