"""Run one detector/strategy/budget over a set of series and seeds; produce the JSON record.

The JSON (``schema: anomaloop.bench/1``) holds one record per (series, seed) and a ``pooled`` block
(mean over series per seed, then mean ± std over seeds). Every metric is computed on the evaluation
part only; ``best_f1`` uses the oracle threshold (best over all thresholds on the evaluation labels —
an upper bound, never deployable); ``f1_deployable`` uses a threshold chosen from the acquired labels
only (or, with none, from the scores of the fit part).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.baselines import BASELINES
from app.bench.data import LoadedSeries, discover, load
from app.bench.protocol import ProtocolConfig, make_split
from app.core.adoption import AdoptionRule
from app.core.detectors.base import Detector
from app.core.loop import GroundTruthOracle, Split, run_project
from app.core.thresholds import DEFAULT_THRESHOLD_METHOD

SCHEMA = "anomaloop.bench/1"
METRIC_KEYS = ("pr_auc", "roc_auc", "vus_pr", "best_f1", "f1_deployable", "f1_pa", "pa_k_auc")
# --quick shrinks whatever of these a detector accepts, so a smoke run takes seconds.
QUICK_PARAMS = {
    "epochs": 1,
    "feedback_epochs": 1,
    "n_episodes": 1,
    "episodes": 1,
    "n_estimators": 25,
    "warmup_episodes": 1,
    "steps_per_episode": 50,
}
QUICK_ROWS = 2500
QUICK_SERIES = 2


@dataclass(frozen=True)
class RunConfig:
    """One benchmark run. ``budget``: fraction of pool windows (< 1) or a count; 0 = unsupervised."""

    detector: str
    strategy: str | None = None
    budget: float = 0.0
    round_size: int = 10
    rounds: int | None = None
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    quick: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    answer: str = "auto"
    protocol: ProtocolConfig = ProtocolConfig()
    max_series: int | None = None
    series_filter: tuple[str, ...] = ()
    tag: str | None = None
    """Free-text variant name (an ablation arm); shown by ``bench table`` beside the detector."""

    adoption: str = "validate"
    """The product's adoption policy the bench applies: ``validate`` (default; the served model is reported) or
    ``always`` (the newest version, what the product did before safe adoption)."""

    threshold_method: str = DEFAULT_THRESHOLD_METHOD
    """How each version's threshold is chosen (a project's ``threshold_method``; :mod:`app.core.thresholds`)."""

    project: bool = False
    """False: each series is a project of its own. True: the series kept under each ``--data`` path form one project
    (one model fitted on all their pools, one budget of answers over all of them, rounds ranked across them, one
    threshold), as an analyst who puts a fleet's machines in one project runs it; each series is still evaluated
    on its own evaluation part."""

    @property
    def strategy_name(self) -> str:
        """The detector's own default strategy (``Detector.default_strategy``) unless one is given."""
        return self.strategy or detector_type(self.detector).default_strategy

    @property
    def answer_mode(self) -> str:
        """How the oracle answers: the detector's ``answer_mode``, exactly as the product's ground-truth oracle
        answers it (RLAD: the end point only; everything else: the whole window)."""
        if self.answer != "auto":
            return self.answer
        return detector_type(self.detector).answer_mode


class BenchInputError(ValueError):
    """What was asked cannot run (no usable series, a project whose series differ in channels): the CLI says so."""


# -- detectors ------------------------------------------------------------------------------------


def detector_names() -> list[str]:
    from app.bench.peers import PEERS  # the peers' libraries are imported only when one is built
    from app.core.detectors import available_detectors

    return sorted({*available_detectors(), *BASELINES, *PEERS})


def detector_type(name: str) -> type[Detector]:
    """The class behind a bench detector name (a baseline, a peer or a core registry name)."""
    from app.bench.peers import PEERS

    if name in BASELINES:
        return BASELINES[name]
    if name in PEERS:
        return PEERS[name]
    from app.core.detectors.registry import detector_class

    return detector_class(name)


def build_detector(name: str, seed: int, device: str, params: dict[str, Any], quick: bool = False) -> Any:
    """A fresh unfitted detector: a baseline, a peer or a core registry name, with ``params`` (+ quick shrink)."""
    cls = detector_type(name)
    accepted = _accepted_params(cls)
    kw: dict[str, Any] = {"seed": seed}
    if "device" in accepted:
        kw["device"] = device
    if quick:
        kw.update({k: v for k, v in QUICK_PARAMS.items() if k in accepted})
    kw.update(params)
    detector = cls(**kw)
    return detector.check_params() if isinstance(detector, Detector) else detector  # a peer checks its own


def _accepted_params(cls: type) -> set[str]:
    """Keyword names ``cls`` accepts: its ``__init__`` signatures through the MRO, plus the fields of
    its ``config_cls`` dataclass when it has one (deep detectors take their config as ``**params``)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        sig = inspect.signature(init)
        names |= {p.name for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    config_cls = getattr(cls, "config_cls", None)
    if config_cls is not None and dataclasses.is_dataclass(config_cls):
        names |= {f.name for f in dataclasses.fields(config_cls)}
    names.discard("self")
    return names


# -- metrics --------------------------------------------------------------------------------------


def per_round_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The cheap metrics computed after every round (learning curves)."""
    from app.core import metrics as m

    return {"pr_auc": float(m.pr_auc(scores, labels)), "roc_auc": float(m.roc_auc(scores, labels))}


def final_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Every reported metric on the evaluation part. ``threshold`` is the deployable one."""
    from app.core import metrics as m

    best, best_thr = m.best_f1(scores, labels)
    pred_f1 = _f1_at(scores, labels, threshold)
    return {
        "pr_auc": float(m.pr_auc(scores, labels)),
        "roc_auc": float(m.roc_auc(scores, labels)),
        "vus_pr": float(m.vus_pr(scores, labels)),
        "best_f1": float(best),
        "best_f1_threshold": float(best_thr),
        "best_f1_is_oracle": True,
        "f1_deployable": float(pred_f1),
        "deployable_threshold": float(threshold),
        "f1_pa": float(m.pa_k_f1(scores, labels, 0)),
        "pa_k_auc": float(m.pa_k_auc(scores, labels)),
    }


def _f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    from app.core import metrics as m

    out = m.precision_recall_f1(scores, labels, threshold)
    return float(out[2] if isinstance(out, tuple) else getattr(out, "f1", out))


# -- running --------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports KiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def select_series(paths: Sequence[str | Path], cfg: RunConfig) -> tuple[list[tuple[LoadedSeries, Split]], list[str]]:
    """Load the series under ``paths`` and apply the protocol; returns (kept, skipped keys)."""
    kept: list[tuple[LoadedSeries, Split]] = []
    skipped: list[str] = []
    for path in paths:
        per_path = 0
        for files in discover(path):
            if cfg.series_filter and not any(f in files.key for f in cfg.series_filter):
                continue
            limit = QUICK_SERIES if cfg.quick else cfg.max_series
            if limit is not None and per_path >= limit:
                break
            series = load(files, nrows=QUICK_ROWS if cfg.quick else None)
            split = make_split(series, cfg.protocol)
            if split is None:
                skipped.append(files.key)
                continue
            kept.append((series, split))
            per_path += 1
    return kept, skipped


def run_one(series: LoadedSeries, split: Split, cfg: RunConfig, seed: int, device: str) -> dict[str, Any]:
    """One (series, seed) experiment → its JSON record."""
    return run_group([(series, split)], cfg, seed, device)[0]


def run_group(
    items: Sequence[tuple[LoadedSeries, Split]], cfg: RunConfig, seed: int, device: str
) -> list[dict[str, Any]]:
    """One experiment on a project of the series ``items`` (one series: a project of its own) → one JSON record per
    series, each with that series' metrics under the project's served model and threshold. The budget, the rounds,
    the versions refused and the timings are the project's; the answers and points revealed are each series' own."""
    from app.core.runtime import seed_everything

    seed_everything(seed)
    det = build_detector(cfg.detector, seed, device, cfg.params, cfg.quick)
    oracles = [GroundTruthOracle(split.y, split.pool, answer=cfg.answer_mode) for _, split in items]
    t0 = time.perf_counter()
    res = run_project(
        det,
        [split for _, split in items],
        cfg.strategy_name,
        oracles,
        cfg.round_size,
        cfg.budget,
        seed,
        evaluate=per_round_metrics,
        n_rounds=cfg.rounds,
        adoption=AdoptionRule(policy=cfg.adoption),
        threshold_method=cfg.threshold_method,
    )
    wall = time.perf_counter() - t0
    method, labeled = cfg.threshold_method, any(r.value == 1 for rs in res.state.labels for r in rs)
    if method in ("best_f1", "expected_f1"):  # both fall back to a percentile without a labeled anomaly
        method = f"{method}_on_labels" if labeled else "percentile_99_pool"
    labels_seen = getattr(res.detector, "labels_seen_", None)
    records = []
    for i, ((series, split), oracle) in enumerate(zip(items, oracles, strict=True)):
        a, b = split.evaluation
        # the served model's threshold, chosen as the product chooses it (the project's threshold method, by
        # default the best F1 expected over the pool, else the 99th percentile of its scores): the F1 a user gets
        metrics = final_metrics(res.scores[i][a:b], split.y[a:b].astype(int), res.threshold)
        metrics["threshold_method"] = method
        mine = [q for q in res.queries if q.series == i]
        record = {
            "series": series.key,
            "dataset": series.files.dataset,
            "seed": seed,
            "n_points": int(len(split.X)),
            "n_fit": int(len(split.X_fit)),
            "n_channels": int(split.X.shape[1]),
            "pool": list(split.pool),
            "evaluation": list(split.evaluation),
            "eval_anomaly_rate": float(split.y[a:b].mean()),
            "metrics": metrics,
            "labels_used": len(mine),  # this series' answers (a project's are in "project")
            "oracle_labels": int(oracle.labels_used),
            "detector_labels_seen": None if labels_seen is None else int(labels_seen),
            "points_revealed": int(oracle.points_revealed),
            "revealed_share": float(oracle.points_revealed / max(1, split.pool[1] - split.pool[0])),
            "versions_refused": sum(not r.served for r in res.rounds),
            "warmup_labels": sum(q.strategy == "warmup" for q in mine),
            "budget_labels": int(res.budget),
            "rounds": len(res.rounds) - 1,
            "curve": [
                {
                    "round": r.round,
                    "labels_used": r.labels_used,
                    **r.series_metrics[i],
                    "served": r.served,
                    "candidate_pr_auc": r.candidate_metrics.get("pr_auc"),
                    "n_anomalous_queries": r.n_anomalous_queries,
                    # why the candidate served or not, and the threshold guard's figures (app/core/adoption.py):
                    # raised_from is the threshold its labels chose when the guard raised it
                    **{
                        k: r.verdict.get(k)
                        for k in ("reason", "flag_share", "flag_limit", "anomaly_rate", "raised_from")
                    },
                }
                for r in res.rounds
            ],
            "fit_seconds": res.fit_seconds,
            "feedback_seconds": res.feedback_seconds,
            "score_seconds": res.score_seconds,
            "wall_seconds": wall,
            "peak_rss_mb": peak_rss_mb(),
            "params": _jsonable(det.get_params()),
            "files": series.sha256,
        }
        if len(items) > 1:  # the project's figures: its answers in all, and its mean over series each round
            record["project"] = {
                "series": [s.key for s, _ in items],
                "answers": int(res.labels_used),
                "curve_pr_auc": [r.metrics.get("pr_auc") for r in res.rounds],
            }
        records.append(record)
    return records


def pooled(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per data set and over all: mean over series for each seed, then mean ± std over seeds."""
    out: dict[str, Any] = {}
    groups: dict[str, list[dict[str, Any]]] = {"all": records}
    for r in records:
        groups.setdefault(r["dataset"], []).append(r)
    for name, recs in groups.items():
        seeds = sorted({r["seed"] for r in recs})
        block: dict[str, Any] = {"n_series": len({r["series"] for r in recs}), "seeds": seeds}
        for key in (*METRIC_KEYS, "labels_used", "revealed_share", "fit_seconds", "feedback_seconds", "score_seconds"):
            per_seed = []
            for s in seeds:
                vals = [(r["metrics"][key] if key in r["metrics"] else r.get(key, 0.0)) for r in recs if r["seed"] == s]
                per_seed.append(float(np.mean(vals)))
            block[key] = {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)), "per_seed": per_seed}
        block["points"] = int(sum(r["n_points"] for r in recs if r["seed"] == seeds[0]))
        out[name] = block
    return out


def git_revision() -> str | None:
    """Short git revision of the working tree (with ``-dirty``), or None before the first commit."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=root)  # noqa: S603, S607

    try:
        rev = git("rev-parse", "--short", "HEAD")
        if rev.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    if "torch" in sys.modules:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run(
    paths: Sequence[str | Path], cfg: RunConfig, log: Callable[[str], None] | None = None, command: str = ""
) -> dict[str, Any]:
    """The whole run → the JSON document (see module docstring)."""
    from app.core.runtime import resolve_device

    started = time.perf_counter()
    device = resolve_device(cfg.device) if cfg.detector not in BASELINES and cfg.detector != "iforest" else "cpu"
    per_path = [select_series([path], cfg) for path in paths]
    kept = [item for k, _ in per_path for item in k]
    skipped = [key for _, s in per_path for key in s]
    if not kept:
        raise BenchInputError(f"no usable series under {', '.join(map(str, paths))} (skipped: {len(skipped)})")
    # one project per --data path (its kept series, in order), or each series a project of its own
    groups = [k for k, _ in per_path if k] if cfg.project else [[item] for item in kept]
    for group in groups:  # refused before any experiment runs
        if len({split.X.shape[1] for _, split in group}) != 1:
            keys = ", ".join(f"{s.key} ({sp.X.shape[1]})" for s, sp in group)
            raise BenchInputError(f"a project's series must have the same number of channels: {keys}")
    records = []
    for group in groups:
        for seed in cfg.seeds:
            for rec in run_group(group, cfg, seed, device):
                records.append(rec)
                if log:
                    m = rec["metrics"]
                    log(
                        f"{rec['series']} seed={seed} pr_auc={m['pr_auc']:.3f} best_f1={m['best_f1']:.3f} "
                        f"labels={rec['labels_used']} rounds={rec['rounds']} {rec['wall_seconds']:.1f}s"
                    )
    cfg_dict = asdict(cfg)
    cfg_dict["strategy"] = cfg.strategy_name
    cfg_dict["answer"] = cfg.answer_mode
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "git_revision": git_revision(),
        "machine": machine(),
        "device": device,
        "config": _jsonable(cfg_dict),
        "data": [str(p) for p in paths],
        "series": records,
        "skipped": skipped,
        "pooled": pooled(records),
        "peak_rss_mb": peak_rss_mb(),
        "wall_seconds": time.perf_counter() - started,
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)
