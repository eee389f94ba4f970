"""Data set pages (home, series explorer, import form) and their /api/v1 endpoints."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import JSONResponse, RedirectResponse, Response

from app.accounts.service import audit
from app.datasets import service
from app.datasets.reader import SUFFIXES, ImportOptions, series_name
from app.datasets.schemas import AppendOut, DatasetOut, ImportedOut, PointsIn, SeriesOut, SeriesViewOut
from app.deps import AdminPrincipal, CurrentPrincipal, DatabaseDep, RawBody, SessionDep, SettingsDep
from app.errors import AppError, NotFound
from app.jobs.router import enqueue_after_commit
from app.rendering import render, wants_json
from app.settings import Settings
from app.versions import scoring
from app.versions.service import projects_with_series

router = APIRouter()

MAX_POINT = 2**31 - 1  # point indices are 32-bit integers in the database
MAX_CHANNELS_PER_VIEW = 256
MAX_NAME = 200  # data set and series names (the database columns hold 200 and 300 characters)


@router.get("/", include_in_schema=False)
def home(request: Request, session: SessionDep, principal: CurrentPrincipal) -> Response:
    return render(request, "home.html", principal, datasets=service.list_datasets(session))


@router.get("/series/{series_id}", include_in_schema=False)
def series_page(request: Request, series_id: int, session: SessionDep, principal: CurrentPrincipal) -> Response:
    series = service.get_series(session, series_id)
    return render(
        request,
        "series.html",
        principal,
        series=series,
        dataset=series.dataset,
        overlay_projects=projects_with_series(session, series_id),
    )


@router.get("/api/v1/datasets", response_model=list[DatasetOut], tags=["datasets"])
def list_datasets(session: SessionDep, principal: CurrentPrincipal) -> list[DatasetOut]:
    return [DatasetOut.model_validate(d) for d in service.list_datasets(session)]


@router.get("/api/v1/series/{series_id}", response_model=SeriesOut, tags=["datasets"])
def get_series(series_id: int, session: SessionDep, principal: CurrentPrincipal) -> SeriesOut:
    return SeriesOut.model_validate(service.get_series(session, series_id))


@router.get("/api/v1/series/{series_id}/view", response_model=SeriesViewOut, tags=["datasets"])
def series_view(
    series_id: int,
    session: SessionDep,
    principal: CurrentPrincipal,
    start: Annotated[int, Query(ge=0, le=MAX_POINT, description="first point (inclusive)")] = 0,
    end: Annotated[
        int | None, Query(ge=1, le=MAX_POINT, description="last point (exclusive); default the series end")
    ] = None,
    width: Annotated[int, Query(ge=16, le=4000, description="chart width in pixels: ~2 points per pixel")] = 1000,
    channels: Annotated[
        str | None,
        Query(max_length=4000, description="comma-separated channel indices; default all (repeats are ignored)"),
    ] = None,
) -> SeriesViewOut:
    series = service.get_series(session, series_id)
    chosen = _parse_channels(channels)
    view = service.series_view(session, series, start, end, width, chosen)
    # field by field, not dataclasses.asdict: that deep-copies every point of every channel (a third of the request)
    return SeriesViewOut.model_validate({f.name: getattr(view, f.name) for f in fields(view)})


def _parse_channels(text: str | None) -> list[int] | None:
    """Channel indices in the order given, each once (``0,0,0,...`` is channel 0): the response grows with the
    number of channels, so it is bounded by the distinct channels a series has, at most 256 in one view."""
    if text is None or text.strip() == "":
        return None
    try:
        parsed = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise AppError(f"channels must be comma-separated integers, not {text[:100]!r}", status=422) from None
    unique = list(dict.fromkeys(parsed))
    if len(unique) > MAX_CHANNELS_PER_VIEW:
        raise AppError(f"at most {MAX_CHANNELS_PER_VIEW} channels in one view", status=422)
    return unique


def _save_upload(upload: UploadFile, settings: Settings) -> Path:
    name = Path(upload.filename or "").name
    if not name or not name.lower().endswith(SUFFIXES):
        raise AppError(f"{name[:100] or 'the upload'}: expected a .csv, .csv.gz or .parquet file")
    if len(name) > MAX_NAME:
        raise AppError(f"the file name has {len(name)} characters; rename it to at most {MAX_NAME}", status=422)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=_upload_dir(settings)))
    target = folder / name
    limit = settings.max_upload_mb * 1024 * 1024
    written = 0
    with target.open("wb") as out:
        while block := upload.file.read(1 << 20):
            written += len(block)
            if written > limit:
                shutil.rmtree(folder, ignore_errors=True)
                raise AppError(f"{name}: larger than the {settings.max_upload_mb} MB upload limit", status=413)
            out.write(block)
    return target


def _upload_dir(settings: Settings) -> Path:
    folder = settings.data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _import_upload(
    db: DatabaseDep,
    settings: Settings,
    principal: AdminPrincipal,
    upload: UploadFile,
    dataset: str,
    options: ImportOptions,
) -> list[ImportedOut]:
    path = _save_upload(upload, settings)
    try:
        # Its own transaction: a file that fails half-way leaves nothing behind.
        with db.session_scope() as session:
            imported = service.import_files(session, [path], dataset.strip() or series_name(path), options)
            for item in imported:
                audit(
                    session,
                    principal.user,
                    "series.import",
                    "series",
                    item.series_id,
                    name=item.name,
                    n_points=item.n_points,
                )
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)
    return [ImportedOut(**asdict(i)) for i in imported]


def _options(label_column: str, timestamp_column: str, fill: str, timestamps: str, settings: Settings) -> ImportOptions:
    return ImportOptions(
        label_column=label_column or None,
        timestamp_column=timestamp_column or None,
        fill=fill,  # type: ignore[arg-type]
        timestamps=timestamps,  # type: ignore[arg-type]
        chunk_points=settings.chunk_points,
        max_bytes=settings.max_upload_mb * 1024 * 1024,
    )


FillForm = Annotated[Literal["reject", "ffill", "zero", "keep"], Form()]
TimestampsForm = Annotated[Literal["strict", "index"], Form()]


@router.post("/api/v1/datasets/import", response_model=list[ImportedOut], status_code=201, tags=["datasets"])
def import_api(
    db: DatabaseDep,
    settings: SettingsDep,
    principal: AdminPrincipal,
    file: Annotated[UploadFile, File(description="CSV, CSV.gz or Parquet")],
    dataset: Annotated[str, Form(max_length=MAX_NAME)] = "",
    label_column: Annotated[str, Form(max_length=MAX_NAME)] = "label",
    timestamp_column: Annotated[str, Form(max_length=MAX_NAME)] = "timestamp",
    fill: FillForm = "reject",
    timestamps: TimestampsForm = "strict",
) -> list[ImportedOut]:
    return _import_upload(
        db, settings, principal, file, dataset, _options(label_column, timestamp_column, fill, timestamps, settings)
    )


@router.get("/admin/import", include_in_schema=False)
def import_page(request: Request, principal: AdminPrincipal, session: SessionDep) -> Response:
    return render(request, "import.html", principal, datasets=service.list_datasets(session))


@router.post("/admin/import", include_in_schema=False)
def import_form(
    request: Request,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: AdminPrincipal,
    file: Annotated[UploadFile, File()],
    dataset: Annotated[str, Form(max_length=MAX_NAME)] = "",
    label_column: Annotated[str, Form(max_length=MAX_NAME)] = "label",
    timestamp_column: Annotated[str, Form(max_length=MAX_NAME)] = "timestamp",
    fill: FillForm = "reject",
    timestamps: TimestampsForm = "strict",
) -> Response:
    try:
        imported = _import_upload(
            db, settings, principal, file, dataset, _options(label_column, timestamp_column, fill, timestamps, settings)
        )
    except AppError as exc:
        if wants_json(request):
            raise
        with db.session_scope() as session:
            datasets = service.list_datasets(session)
            return render(
                request,
                "import.html",
                principal,
                status_code=exc.status,
                error=exc.message,
                datasets=datasets,
                form={
                    "dataset": dataset,
                    "label_column": label_column,
                    "timestamp_column": timestamp_column,
                    "fill": fill,
                },
            )
    if not imported:
        raise NotFound("nothing imported")
    return RedirectResponse(f"/series/{imported[0].series_id}", status_code=303)


_POINTS_BODY: dict = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PointsIn.model_json_schema()},
            "text/csv": {"schema": {"type": "string"}, "example": "timestamp,value\n2024-01-01T00:00:00Z,1.5\n"},
        },
    }
}


@router.post(
    "/api/v1/series/{series_id}/points",
    response_model=AppendOut,
    status_code=201,
    tags=["datasets"],
    openapi_extra=_POINTS_BODY,
    responses={409: {"description": "The Idempotency-Key was used for a different batch."}},
)
def append_points(
    series_id: int,
    request: Request,
    background: BackgroundTasks,
    db: DatabaseDep,
    principal: CurrentPrincipal,
    body: RawBody,
    content_type: Annotated[str, Header()] = "application/json",
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Retries with the same key and batch are stored once, answered alike."),
    ] = None,
) -> Response:
    """Append points after the series' last one (write scope); every project whose serving model covers the series
    scores them: here for up to 10,000 points, by a `score` job for more. Validated as an import is; a batch that
    fails validation stores nothing. See docs/LIVE_DATA.md."""
    with db.session_scope() as session:  # the points commit before they are scored
        appended = scoring.append_points(session, principal.user.id, series_id, body, content_type, idempotency_key)
    job_ids = list(appended.job_ids)
    out = appended.as_dict()
    if appended.score_now:
        out["scoring"], follow_up = scoring.score_after_append(db, appended.append_id)
        job_ids += follow_up
    enqueue_after_commit(request, background, job_ids)
    headers = {"Idempotent-Replayed": "true"} if appended.replayed else {}
    return JSONResponse(
        AppendOut.model_validate(out).model_dump(mode="json"), status_code=201, headers=headers, background=background
    )
