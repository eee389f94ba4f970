"""The benchmark plan: every ``anomaloop bench run`` behind BENCHMARKS.md's tables, one command a line.

``anomaloop bench plan`` prints them; ``make bench`` (``scripts/bench.sh``) runs them a few at a time and
renders the tables. The subsets are fixed here, chosen before any labeled run by a rule that reads
the pool only (BENCHMARKS.md, section 2): per data set the first series in name order whose *pool*
holds at least one anomaly (label efficiency cannot show where the oracle only ever answers "normal").
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

SUBSETS: dict[str, tuple[str, ...]] = {
    "nab": (
        "realAWSCloudwatch__ec2_cpu_utilization_53ea38",
        "realAWSCloudwatch__ec2_cpu_utilization_5f5533",
        "realAWSCloudwatch__ec2_cpu_utilization_fe7f93",
        "realAWSCloudwatch__ec2_disk_write_bytes_1ef3de",
    ),
    "skab": ("other__10", "other__11", "other__12", "other__13"),
    # the four shortest kpi series (all hold pool anomalies)
    "kpi": (
        "0efb375b-b902-3661-ab23-9a0bb799f4e3",
        "301c70d8-1630-35ac-8f96-bc1b6f4359ea",
        "c02607e8-7399-3dde-9d28-8a8da5e5d251",
        "e0747cad-8dc8-38a9-a9ab-855b61f5551d",
    ),
    "asd": ("omi-1", "omi-10", "omi-11"),
    "smd": ("machine-1-2", "machine-1-3", "machine-1-4"),
    # the only smap series with an anomaly in their pool
    "smap": ("P-1", "P-4", "T-1", "T-3"),
}
LABEL_SUBSETS: dict[str, tuple[str, ...]] = {
    # Issue 13's evidence: per set the first eight series in name order whose pool holds an anomaly (kpi: the eight
    # shortest such, its others run to 146k points), every such series of asd and smd, and smap's only four.
    "nab": (
        "realAWSCloudwatch__ec2_cpu_utilization_53ea38",
        "realAWSCloudwatch__ec2_cpu_utilization_5f5533",
        "realAWSCloudwatch__ec2_cpu_utilization_fe7f93",
        "realAWSCloudwatch__ec2_disk_write_bytes_1ef3de",
        "realAWSCloudwatch__ec2_disk_write_bytes_c0d644",
        "realAWSCloudwatch__ec2_network_in_5abac7",
        "realAWSCloudwatch__elb_request_count_8c0756",
        "realAWSCloudwatch__grok_asg_anomaly",
    ),
    "kpi": (
        "0efb375b-b902-3661-ab23-9a0bb799f4e3",
        "301c70d8-1630-35ac-8f96-bc1b6f4359ea",
        "c02607e8-7399-3dde-9d28-8a8da5e5d251",
        "e0747cad-8dc8-38a9-a9ab-855b61f5551d",
        "a8c06b47-cc41-3738-9110-12df0ee4c721",
        "54350a12-7a9d-3ca8-b81f-f886b9d156fd",
        "ab216663-dcc2-3a24-b1ee-2c3e550e06c9",
        "a07ac296-de40-3a7c-8df3-91f642cc14d0",
    ),
    "skab": ("other__10", "other__11", "other__12", "other__13", "other__2", "other__3", "other__5", "other__6"),
    "smd": (
        "machine-1-2",
        "machine-1-3",
        "machine-1-4",
        "machine-1-6",
        "machine-1-7",
        "machine-1-8",
        "machine-2-1",
        "machine-2-3",
        "machine-2-4",
        "machine-2-5",
        "machine-2-7",
        "machine-3-10",
        "machine-3-2",
        "machine-3-3",
        "machine-3-4",
        "machine-3-5",
    ),
    "asd": (
        "omi-1",
        "omi-10",
        "omi-11",
        "omi-12",
        "omi-2",
        "omi-3",
        "omi-4",
        "omi-5",
        "omi-6",
        "omi-7",
        "omi-8",
        "omi-9",
    ),
    "smap": ("P-1", "P-4", "T-1", "T-3"),
}
LABEL_DETECTORS = ("ensemble", "aadforest", "xgbod", "rlad", "lstm_ae")
"""Issue 13's table: the served ensemble, the peers given the same answers, RLAD and a minimax backbone."""
PARTS = ("efficiency", "s002", "ablations", "labels")
LABEL_DETECTOR_ARGS: dict[str, tuple[str, ...]] = {
    # XGBOD with one training window per answer (only fully labeled windows): with the end-point rule each answer
    # gives ~25 near-identical windows and one 38-channel SMD machine took 500-1,100 s per run.
    "xgbod": ("--param", "label_rule=covered"),
}
LABEL_REFERENCES = ("random", "oneliner", "rollingz", "iforest", "knn")
"""Unsupervised references (budget 0): the sanity baselines and the ensemble's members alone."""
PAIR_SETS = ("asd", "smd", "smap")
"""Train/test sets: the label-efficiency runs fit on train ∪ pool (seed 002's *w/ unlabeled*), so their
budget-0 and 1 % runs are also the *w/ unlabeled* and *with feedback* arms of the 002 table."""
SANITY = ("random", "oneliner")
LABELED = ("usad", "lstm_ae", "rlad", "transformer")
BACKBONES = ("usad", "lstm_ae", "transformer")
BUDGETS = (0.0, 0.001, 0.01, 0.05)
FEEDBACK_ABLATIONS = {
    "wsum": ("weighted_sum", ["--param", "feedback_loss=weighted_sum"]),
    "nomask": ("no masking", ["--param", "masking=false"]),
    "unbounded": ("unbounded", ["--param", "maximize=unbounded"]),
    "topk": ("top-k only", ["--strategy", "top_k"]),
    "interval": ("interval only", ["--strategy", "interval"]),
    "random": ("random queries", ["--strategy", "random"]),
}
RLAD_ABLATIONS = {
    "full": ("full", []),
    "noprop": ("no propagation", ["--param", "use_propagation=false"]),
    "nowarm": ("no warm-up", ["--param", "use_warmup=false"]),
    "neither": ("neither", ["--param", "use_propagation=false", "--param", "use_warmup=false"]),
}


@dataclass(frozen=True)
class PlanConfig:
    data_root: str = "../shared/data"
    out: str = "bench-results/plan"
    sets: tuple[str, ...] = tuple(SUBSETS)
    seeds: tuple[int, ...] = (0, 1)
    detectors: tuple[str, ...] = LABELED
    budgets: tuple[float, ...] = BUDGETS
    parts: tuple[str, ...] = ("efficiency", "s002", "ablations")
    ablation_backbone: str = "transformer"
    quick: bool = False
    executable: str = ".venv/bin/anomaloop"
    label_detectors: tuple[str, ...] = LABEL_DETECTORS


def _subset_args(
    cfg: PlanConfig, ds: str, fit_with_pool: bool, subsets: dict[str, tuple[str, ...]] = SUBSETS
) -> list[str]:
    args = ["--data", f"{cfg.data_root}/{ds}"]
    for s in subsets[ds]:
        args += ["--series", s]
    if ds == "asd":
        args += ["--max-series", str(len(subsets[ds]))]  # "omi-1" also matches omi-10 … omi-19
    if fit_with_pool and ds in PAIR_SETS:
        args.append("--fit-with-pool")
    return args


def _command(cfg: PlanConfig, name: str, args: list[str]) -> str:
    base = [cfg.executable, "bench", "run", "--device", "cpu", "--threads", "1", *args]
    if cfg.quick:
        base.append("--quick")
    path = f"{cfg.out}/{name}"
    return f"{shlex.join([*base, '--out', path + '.json'])} > {shlex.quote(path + '.log')} 2>&1"


def _budget_name(b: float) -> str:
    return f"{b:g}"


def commands(cfg: PlanConfig) -> Iterator[str]:
    """The plan's commands, cheapest data sets first within each seed; each writes ``NAME.json``/``.log``."""
    for seed in cfg.seeds:
        for ds in cfg.sets:
            sub = _subset_args(cfg, ds, fit_with_pool=True)
            if "efficiency" in cfg.parts:
                for det in (*(SANITY if seed == cfg.seeds[0] else ()), "iforest"):
                    yield _command(cfg, f"{ds}_{det}_0_s{seed}", [*sub, "--seed", str(seed), "--detector", det])
                for det in cfg.detectors:
                    for b in cfg.budgets:
                        if b == 0 and det == "rlad":
                            continue  # unlabeled RLAD scores by its warm-up forest: iforest's row
                        rounds = ["--rounds", "2"] if b > 0 else []
                        yield _command(
                            cfg,
                            f"{ds}_{det}_{_budget_name(b)}_s{seed}",
                            [*sub, "--seed", str(seed), "--detector", det, "--budget", f"{b:g}", *rounds],
                        )
            if "s002" in cfg.parts and ds in PAIR_SETS:
                wo = _subset_args(cfg, ds, fit_with_pool=False)
                for det in BACKBONES:
                    if det in cfg.detectors:
                        yield _command(
                            cfg,
                            f"{ds}_{det}_wo_s{seed}",
                            [*wo, "--seed", str(seed), "--detector", det, "--tag", "w/o unlabeled"],
                        )
        if "ablations" in cfg.parts:
            yield from _ablations(cfg, seed)
        if "labels" in cfg.parts:
            yield from _labels(cfg, seed)


def _labels(cfg: PlanConfig, seed: int) -> Iterator[str]:
    """Issue 13's table: references at budget 0, then every labeled detector at every budget, 3 rounds each (the
    served model is reported: the product's adoption rule applies)."""
    for ds in cfg.sets:
        sub = _subset_args(cfg, ds, fit_with_pool=True, subsets=LABEL_SUBSETS)
        for det in LABEL_REFERENCES:
            yield _command(cfg, f"lab_{ds}_{det}_0_s{seed}", [*sub, "--seed", str(seed), "--detector", det])
        for det in cfg.label_detectors:
            for b in cfg.budgets:
                if b == 0 and det == "rlad":
                    continue  # unlabeled RLAD scores by its warm-up forest: iforest's row
                rounds = ["--rounds", "3"] if b > 0 else []
                yield _command(
                    cfg,
                    f"lab_{ds}_{det}_{_budget_name(b)}_s{seed}",
                    [
                        *sub,
                        "--seed",
                        str(seed),
                        "--detector",
                        det,
                        "--budget",
                        f"{b:g}",
                        *rounds,
                        *LABEL_DETECTOR_ARGS.get(det, ()),
                    ],
                )


def _ablations(cfg: PlanConfig, seed: int) -> Iterator[str]:
    for ds in (d for d in ("asd", "smd") if d in cfg.sets):
        sub = _subset_args(cfg, ds, fit_with_pool=True)
        for arm, (tag, extra) in FEEDBACK_ABLATIONS.items():
            yield _command(
                cfg,
                f"abl_{ds}_{cfg.ablation_backbone}_{arm}_s{seed}",
                [
                    *sub,
                    "--seed",
                    str(seed),
                    "--detector",
                    cfg.ablation_backbone,
                    "--budget",
                    "0.01",
                    "--rounds",
                    "2",
                    *extra,
                    "--tag",
                    tag,
                ],
            )
        # RLAD: 60 labels (15 warm-up + 2 rounds) — at 1 % asd's pool gives fewer than its warm-up needs
        sub = _subset_args(cfg, ds, fit_with_pool=False)
        for arm, (tag, extra) in RLAD_ABLATIONS.items():
            yield _command(
                cfg,
                f"abl_{ds}_rlad_{arm}_s{seed}",
                [
                    *sub,
                    "--seed",
                    str(seed),
                    "--detector",
                    "rlad",
                    "--budget",
                    "60",
                    "--rounds",
                    "2",
                    *extra,
                    "--tag",
                    tag,
                ],
            )


def parse_list(text: str, kind: type = str) -> tuple:
    """``"a,b"`` → ``("a", "b")`` (``kind`` converts each item)."""
    return tuple(kind(t.strip()) for t in text.split(",") if t.strip())


def validate(cfg: PlanConfig, detector_names: Sequence[str]) -> None:
    """A ``ValueError`` naming what is wrong with ``cfg`` (unknown set, detector or part)."""
    bad = [s for s in cfg.sets if s not in SUBSETS]
    if bad:
        raise ValueError(f"unknown data set(s) {', '.join(bad)}; choose from {', '.join(SUBSETS)}")
    bad = [d for d in (*cfg.detectors, cfg.ablation_backbone) if d not in detector_names]
    if bad:
        raise ValueError(f"unknown detector(s) {', '.join(bad)}")
    bad = [p for p in cfg.parts if p not in PARTS]
    if bad:
        raise ValueError(f"unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    if any(b < 0 for b in cfg.budgets):
        raise ValueError("budgets must be >= 0")
