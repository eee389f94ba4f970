"""Request/response shapes for projects, rounds, queries and labels."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.core.adoption import AdoptionRule
from app.core.thresholds import DEFAULT_THRESHOLD_METHOD
from app.schemas_common import UtcDateTime

ANSWERS = ("anomaly", "normal", "unsure", "skip")
MAX_ANOMALY_TYPES = 32
MAX_RANGES_PER_ANSWER = 100
TYPE_NAME = r"^[^\x00-\x1f,]{1,40}$"  # a short name: no control characters, no commas (the form lists types by comma)
AnomalyTypeName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40, pattern=TYPE_NAME)
]
Comment = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000, pattern=r"^[^\x00]*$")]  # no NUL


def _unique_types(types: list[str]) -> list[str]:
    if len({t.casefold() for t in types}) != len(types):
        raise ValueError("anomaly types must be distinct (case is ignored)")
    return types


AnomalyTypes = Annotated[
    list[AnomalyTypeName], Field(min_length=1, max_length=MAX_ANOMALY_TYPES), AfterValidator(_unique_types)
]


class ProjectCreate(BaseModel):
    """What an admin chooses for a project; every field has a sensible default but the data set."""

    name: str = Field(min_length=1, max_length=200)
    dataset_id: int
    series_ids: list[int] | None = Field(None, description="Series of the data set to use; default all.")
    detector: str = Field(
        "ensemble",
        description="ensemble (default: statistical scorers + iForest, optional deep "
        "members, combined by the labels), rlad, iforest, ae, vae, lstm_ae, lstm_vae, usad, "
        "transformer.",
    )
    detector_params: dict[str, Any] = Field(default_factory=dict, description="Hyperparameters of the detector.")
    window: int | None = Field(None, ge=2, le=4096, description="Window length in points; default: the detector's.")
    stride: int = Field(1, ge=1, le=4096, description="Step between windows, in points.")
    strategy: str | None = Field(
        None, description="Query strategy: top_k, interval, hybrid, margin, ...; default: the detector's."
    )
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    round_size: int = Field(10, ge=1, le=1000, description="Queries per round (k).")
    budget: int = Field(100, ge=1, le=1_000_000, description="Most windows the analysts will be asked in all.")
    auto_next: bool = Field(False, description="Open the next round as soon as a model version is stored.")
    oracle: Literal["human", "ground_truth"] = "human"
    threshold_method: Literal["percentile", "mean_std", "best_f1", "expected_f1", "fpr"] = DEFAULT_THRESHOLD_METHOD
    holdout_fraction: float = Field(
        0.0, ge=0.0, lt=0.9, description="Last fraction of each series never queried; versions are evaluated there."
    )
    seed: int = Field(0, ge=0)
    adoption_policy: Literal["validate", "always"] = Field(
        "validate",
        description="validate: a new version serves only if the newest answers say it is not worse, and "
        "its threshold is raised where need be so it flags at most max_flag_share of the points (or "
        f"{AdoptionRule.flag_rate_factor:g} times the anomaly rate the labels estimate, where that is more); "
        "always: the newest version serves with the threshold its labels chose.",
    )
    max_flag_share: float = Field(
        0.05, gt=0.0, le=1.0, description="The threshold guard: the share of pool points a threshold may flag."
    )
    answers_per_window: int = Field(
        1,
        ge=1,
        le=5,
        description="Analysts who answer each window; with more than 1 training uses their consensus (majority, "
        "ties unsure unless an admin adjudicates; docs/ANNOTATORS.md).",
    )
    review_grace_minutes: int = Field(
        10,
        ge=0,
        le=10_080,
        description="Minutes a fully answered round stays open for review (undo, edit) before it closes and "
        "retrains by itself; analysts close it sooner with Submit. 0: it closes at its last answer.",
    )
    anomaly_types: AnomalyTypes = Field(
        default_factory=lambda: ["anomaly"],
        description="Types an anomalous range may carry (e.g. spike, level shift, drift, outage); training uses "
        "anomaly vs normal only.",
    )

    @model_validator(mode="after")
    def _bounded_params(self) -> ProjectCreate:
        for label, params in (("detector", self.detector_params), ("strategy", self.strategy_params)):
            problem = _unbounded(params)
            if problem:
                raise ValueError(f"{label} parameters: {problem}")
        return self

    @model_validator(mode="after")
    def _stride_fits(self) -> ProjectCreate:
        if self.window is not None and self.stride > self.window:
            raise ValueError("stride must not exceed the window (some points would never be scored)")
        return self


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    dataset_id: int
    detector: str
    detector_params: dict[str, Any]
    window: int
    stride: int
    strategy: str
    round_size: int
    budget: int
    auto_next: bool
    oracle: str
    threshold_method: str
    holdout_fraction: float
    adoption_policy: str
    max_flag_share: float
    follow_new_versions: bool
    anomaly_types: list[str]
    answers_per_window: int
    review_grace_minutes: int
    serving_version_id: int | None
    created_at: UtcDateTime


class ProjectSettingsIn(BaseModel):
    """What an admin may change on an existing project (PATCH); a field left out stays as it is."""

    anomaly_types: AnomalyTypes | None = Field(
        None, description="Types an anomalous range may carry; labels already stored keep theirs."
    )
    review_grace_minutes: int | None = Field(
        None,
        ge=0,
        le=10_080,
        description="Review time of a fully answered round, minutes (0: it closes at its last answer); applies to "
        "rounds answered from now on.",
    )
    answers_per_window: int | None = Field(
        None,
        ge=1,
        le=5,
        description="Analysts who answer each window, from the next round on; refused (409) while a round is open, "
        "whose windows were asked under the old number.",
    )


class RoundStart(BaseModel):
    strategy: str | None = None
    k: int | None = Field(None, ge=1, le=1000)
    # no control characters: PostgreSQL refuses a NUL in a query parameter, and no username has one
    assignees: list[Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f]*$")]] | None = Field(
        None,
        max_length=50,
        description="Usernames of the analysts whose queues the round's windows are dealt to, round-robin in rank "
        "order (as many per window as the project's answers per window); omitted or empty: anyone answers any window.",
    )


class RoundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    number: int
    strategy: str
    k: int
    status: str
    created_at: UtcDateTime
    completed_at: UtcDateTime | None
    review_until: UtcDateTime | None = Field(
        None, description="While open with every window answered: when it closes by itself unless submitted sooner."
    )
    submitted_by: int | None = None
    assignee_ids: list[int] | None = Field(None, description="The analysts its windows are dealt to (user ids).")


class AdjudicateIn(BaseModel):
    """An admin's decision on a window the analysts disagree on; it wins the consensus."""

    value: Literal["anomaly", "normal", "unsure"]


class QueryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    round_id: int
    series_id: int
    start: int
    end: int
    rank: int
    score: float | None
    margin: float | None
    reason: str
    status: str


class RangeIn(BaseModel):
    """One labeled range of an answer, points ``[start, end)``; it may reach into the context around the window."""

    start: int = Field(ge=0)
    end: int = Field(ge=1, description="Exclusive; clamped to the series' length.")
    value: Literal["anomaly", "normal", "unsure"] = "anomaly"
    label_type: str | None = Field(None, max_length=40, description="One of the project's anomaly_types (anomalies).")
    comment: Comment | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RangeIn:
        if self.end <= self.start:
            raise ValueError(f"range end {self.end} must be after its start {self.start}")
        if self.label_type is not None and self.value != "anomaly":
            raise ValueError(f"only an anomaly range carries a type; this one is {self.value}")
        return self


class AnswerIn(BaseModel):
    """An answer to one query: the whole window (``value``), or labeled ``ranges`` with ``value`` for the rest of the
    window (default normal, as for the older single dragged range ``anomaly_start``/``anomaly_end``)."""

    value: Literal["anomaly", "normal", "unsure", "skip"] | None = Field(
        None, description="The window's answer; with ranges, the answer for the window's points no range covers."
    )
    ranges: list[RangeIn] | None = Field(
        None,
        max_length=MAX_RANGES_PER_ANSWER,
        description="Labeled ranges, not overlapping; each may extend into the context shown around the window.",
    )
    label_type: str | None = Field(None, max_length=40, description="The type of a whole-window anomaly answer.")
    comment: Comment | None = Field(None, description="A comment on the whole-window answer.")
    anomaly_start: int | None = Field(
        None, ge=0, description="Dragged sub-range (points); the rest of the window then counts as normal."
    )
    anomaly_end: int | None = Field(None, ge=1)
    idempotency_key: str | None = Field(None, min_length=8, max_length=60, pattern=r"^[A-Za-z0-9_\-]+$")

    @model_validator(mode="after")
    def _range_pairs(self) -> AnswerIn:
        if (self.anomaly_start is None) != (self.anomaly_end is None):
            raise ValueError("give both anomaly_start and anomaly_end, or neither")
        if self.anomaly_start is not None:
            if self.ranges is not None:
                raise ValueError("give ranges or anomaly_start/anomaly_end, not both")
            if self.value != "anomaly":
                raise ValueError("a dragged sub-range is an anomaly answer")
            if self.anomaly_end <= self.anomaly_start:  # type: ignore[operator]
                raise ValueError("anomaly_end must be after anomaly_start")
        if self.ranges is not None:
            if not self.ranges:
                raise ValueError("ranges is empty: leave it out to answer for the whole window")
            if self.value == "skip":
                raise ValueError("a skipped window has no labeled ranges")
        elif self.value is None:
            raise ValueError("give a value (anomaly, normal, unsure or skip), or labeled ranges")
        if self.label_type is not None and (self.value or "normal") != "anomaly":
            raise ValueError("label_type is for an anomaly answer; give types per range in ranges")
        return self


class LabelIn(BaseModel):
    """A label drawn in the explorer, outside any query."""

    series_id: int
    start: int = Field(ge=0)
    end: int = Field(ge=1)
    value: Literal["anomaly", "normal"]
    label_type: str | None = Field(None, max_length=40, description="One of the project's anomaly_types (anomalies).")
    comment: Comment | None = None
    idempotency_key: str | None = Field(None, min_length=8, max_length=60, pattern=r"^[A-Za-z0-9_\-]+$")


class LabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    series_id: int
    start: int
    end: int
    value: str
    source: str
    author_id: int | None
    round_id: int | None
    query_id: int | None
    supersedes_id: int | None
    label_type: str | None = None
    comment: str | None = None
    created_at: UtcDateTime


class AnswerOut(BaseModel):
    query_id: int
    labels: list[LabelOut]
    duplicate: bool = Field(description="True when this idempotency key was already stored: nothing new written.")
    round_status: str
    round_answered: int
    round_total: int
    round_review_until: UtcDateTime | None = Field(
        None, description="Every window answered, round still open for review: when it closes by itself (UTC)."
    )
    next_query_id: int | None


MAX_PARAM_KEYS = 32
MAX_PARAM_NUMBER = 1_000_000
"""No hyperparameter of any detector or strategy is sensibly larger (epochs, trees, episodes, windows)."""


def _unbounded(params: dict[str, Any], depth: int = 0) -> str | None:
    """What is wrong with an admin's parameter dictionary, or None: at most ``MAX_PARAM_KEYS`` keys of at most 64
    characters, finite numbers of magnitude at most ``MAX_PARAM_NUMBER``, short strings, shallow nesting. The detector
    then checks names and meanings; this keeps a form from asking for 10^12 trees or storing NaN."""
    if len(params) > MAX_PARAM_KEYS:
        return f"at most {MAX_PARAM_KEYS} keys, got {len(params)}"
    for key, value in params.items():
        if len(str(key)) > 64:
            return f"a key longer than 64 characters ({str(key)[:20]}…)"
        values = value if isinstance(value, list) else [value]
        if len(values) > 64:
            return f"{key!r}: at most 64 values"
        for v in values:
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, (int, float)):
                if not math.isfinite(v) or abs(v) > MAX_PARAM_NUMBER:
                    return f"{key!r} must be a finite number of magnitude at most {MAX_PARAM_NUMBER:,}, not {v!r}"
            elif isinstance(v, str):
                if len(v) > 200:
                    return f"{key!r}: a text value longer than 200 characters"
            elif isinstance(v, dict):
                if depth >= 2:  # the ensemble's member_params: {member: {name: value}}
                    return f"{key!r}: nested too deep"
                inner = _unbounded(v, depth + 1)
                if inner:
                    return f"{key!r}: {inner}"
            else:
                return f"{key!r}: unsupported value {v!r}"
    return None
