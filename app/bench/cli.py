"""``anomaloop bench`` — run benchmarks on labeled series and render their results.

The lead mounts :data:`bench_app` as ``anomaloop bench``; ``python -m app.bench.cli`` runs it alone.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from app.bench.protocol import ProtocolConfig
from app.core.thresholds import DEFAULT_THRESHOLD_METHOD, THRESHOLD_METHODS

bench_app = typer.Typer(
    help="Benchmark detectors on labeled series (see BENCHMARKS.md for the protocol).", no_args_is_help=True
)


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON when they parse (``3``, ``0.5``, ``true``), else strings."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"--param wants key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


@bench_app.command("run")
def run_cmd(
    data: Annotated[list[Path], typer.Option("--data", help="A series file or a folder (repeatable).")],
    detector: Annotated[str, typer.Option(help="A core detector name, or random | oneliner | rollingz.")],
    strategy: Annotated[
        str | None,
        typer.Option(
            help="Query strategy (default: the detector's own, e.g. margin "
            "for rlad, hybrid for reconstruction backbones)."
        ),
    ] = None,
    budget: Annotated[float, typer.Option(help="Labels: a fraction of pool windows (<1) or a count; 0 = none.")] = 0.0,
    round_size: Annotated[int, typer.Option("--round-size", help="Windows queried per round.")] = 10,
    rounds: Annotated[
        int | None, typer.Option("--rounds", help="Spend the budget in this many rounds (overrides --round-size).")
    ] = None,
    seed: Annotated[list[int] | None, typer.Option("--seed", help="Seed (repeatable; mean ± std over seeds).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            help="torch CPU threads (0 = torch's default). 1 is fastest on a shared machine: idle threads spin.",
        ),
    ] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON here (default: stdout).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke run: 2 short series per path, tiny models.")] = False,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Detector parameter key=value (repeatable).")
    ] = None,
    answer: Annotated[
        str,
        typer.Option(
            help="Oracle answer: 'window' (sub-ranges over the whole window), "
            "'end_point' (the window's last point only) or 'auto' "
            "(end_point for rlad)."
        ),
    ] = "auto",
    max_series: Annotated[int | None, typer.Option("--max-series", help="At most this many series per path.")] = None,
    series: Annotated[
        list[str] | None, typer.Option("--series", help="Keep series whose key contains this (repeatable).")
    ] = None,
    fit_frac: Annotated[float, typer.Option("--fit-frac", help="Single-file series: fit/pool share.")] = 0.6,
    pool_frac: Annotated[float, typer.Option("--pool-frac", help="Train/test series: pool share of test.")] = 0.3,
    fit_with_pool: Annotated[
        bool,
        typer.Option(
            "--fit-with-pool",
            help="Train/test series: fit on train ∪ pool "
            "(unlabeled; seed 002's 'w/ unlabeled'). No-op for one-file "
            "series, whose pool is the fit part.",
        ),
    ] = False,
    tag: Annotated[
        str | None,
        typer.Option(
            "--tag", help="Free-text variant name shown beside the detector in `bench table` (e.g. an ablation arm)."
        ),
    ] = None,
    adoption: Annotated[
        str,
        typer.Option(
            help="The product's adoption policy: 'validate' (a new version serves "
            "only if the newest answers say it is not worse; the served model "
            "is reported) or 'always' (the newest serves)."
        ),
    ] = "validate",
    threshold_method: Annotated[
        str,
        typer.Option(
            "--threshold-method",
            help="How each version's threshold is chosen from the labels, as a project's setting: best_f1 (on the "
            "labeled points), expected_f1 (over every pool point), percentile, mean_std, fpr.",
        ),
    ] = DEFAULT_THRESHOLD_METHOD,
    project: Annotated[
        bool,
        typer.Option(
            "--project",
            help="Put the series kept under each --data path in one project (one model, one budget of answers over "
            "all of them, rounds ranked across them), as an analyst labeling a fleet in one project does. Default: "
            "each series is a project of its own.",
        ),
    ] = False,
) -> None:
    """Run one detector on every series under the --data paths and write the JSON results."""
    from app.bench.runner import BenchInputError, RunConfig, build_detector, detector_names, run

    if detector not in detector_names():
        raise typer.BadParameter(f"unknown detector {detector!r}; choose one of {', '.join(detector_names())}")
    if not 0 < fit_frac < 1 or not 0 < pool_frac < 1:
        raise typer.BadParameter("--fit-frac and --pool-frac must be in (0, 1)")
    if threshold_method not in THRESHOLD_METHODS:
        raise typer.BadParameter(f"--threshold-method must be one of {', '.join(THRESHOLD_METHODS)}")
    cfg = RunConfig(
        detector=detector,
        strategy=strategy,
        budget=budget,
        round_size=round_size,
        rounds=rounds,
        seeds=tuple(seed or [0]),
        device=device,
        quick=quick,
        params=_parse_params(param or []),
        answer=answer,
        max_series=max_series,
        series_filter=tuple(series or []),
        protocol=ProtocolConfig(fit_frac=fit_frac, pool_frac=pool_frac, fit_with_pool=fit_with_pool),
        tag=tag,
        adoption=adoption,
        threshold_method=threshold_method,
        project=project,
    )
    try:  # a bad --param is refused here, with what to fix, not once per series
        build_detector(detector, cfg.seeds[0], "cpu", cfg.params, quick)
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(f"--param: {exc}") from None
    if threads > 0 and detector not in ("random", "oneliner", "rollingz", "iforest"):
        import torch

        torch.set_num_threads(threads)  # a bench process owns its interpreter; the core never sets this
    command = "anomaloop bench " + shlex.join(sys.argv[1:]) if sys.argv else ""

    def log(msg: str) -> None:
        typer.echo(msg, err=True)

    try:
        doc = run([str(p) for p in data], cfg, log=log, command=command)
    except BenchInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    text = json.dumps(doc, indent=1)
    if out is None:
        typer.echo(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        pooled = doc["pooled"]["all"]
        typer.echo(
            f"{out}: {pooled['n_series']} series, PR-AUC {pooled['pr_auc']['mean']:.3f} "
            f"± {pooled['pr_auc']['std']:.3f}, {doc['wall_seconds']:.1f} s",
            err=True,
        )


@bench_app.command("table")
def table_cmd(
    results: Annotated[list[Path], typer.Argument(help="Bench JSON result files.")],
    html: Annotated[
        Path | None, typer.Option(help="HTML report path (default: bench_report.html beside the first result).")
    ] = None,
    no_html: Annotated[bool, typer.Option("--no-html", help="Print the tables only.")] = False,
    metric: Annotated[str, typer.Option(help="Metric of the learning curves.")] = "pr_auc",
) -> None:
    """Print markdown tables of RESULTS and write an offline HTML report with learning curves."""
    from app.bench.report import html_report, load_results, markdown

    try:
        docs = load_results(results)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(markdown(docs))
    if not no_html:
        path = html or results[0].parent / "bench_report.html"
        html_report(docs, path, metric)
        typer.echo(f"HTML report: {path}", err=True)


@bench_app.command("compare")
def compare_cmd(
    results: Annotated[list[Path], typer.Argument(help="Bench JSON result files (one per variant).")],
    metric: Annotated[str, typer.Option(help="Metric of the cells (a key of the pooled block).")] = "pr_auc",
    base: Annotated[str | None, typer.Option(help="Tag of the reference column; others show their difference.")] = None,
    scale: Annotated[float, typer.Option(help="Multiply differences by this (100: points).")] = 1.0,
) -> None:
    """Print markdown pivot tables: a row per detector, a column per --tag of the runs (ablations, 002)."""
    from app.bench.compare import pivot
    from app.bench.report import load_results

    try:
        docs = load_results(results)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(pivot(docs, metric, base, scale))


@bench_app.command("efficiency")
def efficiency_cmd(
    results: Annotated[list[Path], typer.Argument(help="Bench JSON result files (several budgets, detectors).")],
    metric: Annotated[str, typer.Option(help="Metric of the cells (a key of the pooled block).")] = "pr_auc",
    ratio_at: Annotated[
        list[float] | None,
        typer.Option("--ratio-at", help="Budgets with a ratio column (repeatable; default 0.001 and 0.01)."),
    ] = None,
    exclude_sanity: Annotated[
        bool,
        typer.Option(
            "--exclude-sanity", help="Divide by the best unsupervised detector, leaving random/oneliner/rollingz out."
        ),
    ] = False,
) -> None:
    """Print label-efficiency tables: a row per detector, a column per budget, the ratio to the best
    unsupervised run. Runs that differ only in their seeds are merged (mean ± std over seeds)."""
    from app.bench.efficiency import markdown
    from app.bench.report import load_results

    try:
        docs = load_results(results)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(markdown(docs, metric, tuple(ratio_at or (0.001, 0.01)), exclude_sanity))


@bench_app.command("plan")
def plan_cmd(
    out: Annotated[
        str, typer.Option("--out", help="Folder the planned runs write their JSON and logs to.")
    ] = "bench-results/plan",
    data_root: Annotated[str, typer.Option("--data-root", help="The ../shared/data folder.")] = "../shared/data",
    sets: Annotated[str, typer.Option(help="Comma-separated data sets.")] = "nab,skab,kpi,asd,smd,smap",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1",
    detectors: Annotated[
        str, typer.Option(help="Comma-separated labeled detectors.")
    ] = "usad,lstm_ae,rlad,transformer",
    budgets: Annotated[str, typer.Option(help="Comma-separated budgets.")] = "0,0.001,0.01,0.05",
    parts: Annotated[
        str,
        typer.Option(
            help="Comma-separated: efficiency, s002, ablations, labels (issue 13's "
            "table: the served ensemble, peers, rlad, lstm_ae on larger subsets)."
        ),
    ] = "efficiency,s002,ablations",
    label_detectors: Annotated[
        str, typer.Option("--label-detectors", help="Comma-separated detectors of the 'labels' part.")
    ] = "ensemble,aadforest,xgbod,rlad,lstm_ae",
    ablation_backbone: Annotated[str, typer.Option("--ablation-backbone")] = "transformer",
    quick: Annotated[bool, typer.Option("--quick", help="Plan --quick runs (a smoke test of the plan).")] = False,
    executable: Annotated[str, typer.Option(help="The anomaloop command the lines call.")] = ".venv/bin/anomaloop",
) -> None:
    """Print every `bench run` behind BENCHMARKS.md's tables, one shell command a line (the documented
    subsets, fixed in app/bench/plan.py); `make bench` runs them and renders the tables."""
    from app.bench.plan import PlanConfig, commands, parse_list, validate
    from app.bench.runner import detector_names

    try:
        cfg = PlanConfig(
            data_root=data_root,
            out=out,
            sets=parse_list(sets),
            seeds=parse_list(seeds, int),
            detectors=parse_list(detectors),
            budgets=parse_list(budgets, float),
            parts=parse_list(parts),
            ablation_backbone=ablation_backbone,
            quick=quick,
            executable=executable,
            label_detectors=parse_list(label_detectors),
        )
        validate(cfg, detector_names())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    for line in commands(cfg):
        typer.echo(line)


if __name__ == "__main__":
    bench_app()
