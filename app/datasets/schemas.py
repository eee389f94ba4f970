"""Request/response shapes for datasets and series."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class SeriesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int
    name: str
    split: str
    n_points: int
    n_channels: int
    channel_names: list[str]
    timestamp_kind: str
    first_timestamp: str | None
    last_timestamp: str | None
    has_ground_truth: bool
    n_anomalous_points: int
    n_missing_values: int
    created_at: datetime


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    n_channels: int | None
    series: list[SeriesOut]


class ImportedOut(BaseModel):
    dataset: str
    series_id: int
    name: str
    n_points: int
    n_channels: int
    n_anomalous_points: int
    has_ground_truth: bool


class ViewChannel(BaseModel):
    index: int
    name: str
    i: list[int]
    x: list[float]
    y: list[float | None]


class SeriesViewOut(BaseModel):
    start: int
    end: int
    n_points: int
    x_kind: str
    channels: list[ViewChannel]
    truth: list[tuple[int, int]]
