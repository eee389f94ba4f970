"""anomaloop command line: serve | worker | migrate | import | create-user | project | bench."""

from __future__ import annotations

import getpass
import json
import secrets
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from app.errors import AppError
from app.settings import Settings

cli = typer.Typer(
    help="anomaloop: human-in-the-loop time-series anomaly detection. Settings come from ANOMALOOP_* variables "
    "(see README); --help on any command explains its flags.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError: show the one line, not a traceback
        _fail(f"bad settings: {exc}")
        raise  # unreachable


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _database(settings: Settings):  # type: ignore[no-untyped-def]
    from app.db import Database

    return Database(settings.sqlalchemy_url)


@cli.command()
def migrate() -> None:
    """Bring the database (ANOMALOOP_DATABASE_URL, default a SQLite file in ANOMALOOP_DATA_DIR) to the newest schema."""
    from app.migrate import upgrade

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)
    typer.echo(f"database at head: {_redact(settings.sqlalchemy_url)}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="On an empty database, import the shipped NAB "
                                       "demo series and create demo users (credentials printed).")] = True,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate", help="Run migrations before serving.")] = True,
) -> None:
    """Serve the web app and the REST API (with the in-process worker unless ANOMALOOP_BROKER_URL is set)."""
    import uvicorn

    from app.web import create_app

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate_first:
        from app.migrate import upgrade

        upgrade(settings.sqlalchemy_url)
    db = _database(settings)
    if demo:
        _prepare_demo(settings, db)
    mode = f"Celery broker {_redact(settings.broker_url)}" if settings.broker_url else "in-process worker"
    typer.echo(f"anomaloop on http://{host}:{port} — database {_redact(settings.sqlalchemy_url)}, {mode}")
    uvicorn.run(create_app(settings, db), host=host, port=port, log_level="info")


def _prepare_demo(settings: Settings, db) -> None:  # type: ignore[no-untyped-def]
    from app.accounts import repository as accounts_repo
    from app.accounts.service import create_user
    from app.demo import load_demo

    creds_file = settings.data_dir / "demo-credentials.json"
    with db.session_scope() as session:
        imported = load_demo(session)
        for item in imported:
            typer.echo(f"demo: imported {item.dataset}/{item.name} ({item.n_points:,} points)")
        if accounts_repo.count_users(session) == 0:
            creds = {"admin": secrets.token_urlsafe(9), "analyst": secrets.token_urlsafe(9)}
            for role, password in creds.items():
                create_user(session, role, role, password)
            creds_file.write_text(json.dumps(creds))
            creds_file.chmod(0o600)
    if creds_file.exists():
        creds = json.loads(creds_file.read_text())
        typer.echo("demo users: " + ", ".join(f"{u} / {p}" for u, p in creds.items()) + f"  (from {creds_file})")


@cli.command("import")
def import_cmd(
    paths: Annotated[list[Path], typer.Argument(help="CSV, CSV.gz or Parquet files, or folders of them "
                                                "(shared/data layout, .train/.test pairs included).")],
    dataset: Annotated[str | None, typer.Option(help="Data set to import into (created if new); default the "
                                                "folder or file name.")] = None,
    label_column: Annotated[str, typer.Option(help="0/1 ground-truth column, stored apart from analyst labels; "
                                              "'' for none.")] = "label",
    timestamp_column: Annotated[str, typer.Option(help="Timestamp column: ISO-8601, unix seconds or any "
                                                  "increasing number; '' to use the row number.")] = "timestamp",
    exclude_column: Annotated[list[str], typer.Option(help="A column that is neither a channel nor the label "
                                                      "(repeatable).")] = ["changepoint"],  # noqa: B006
    fill: Annotated[Literal["reject", "ffill", "zero", "keep"], typer.Option(
        help="NaN/inf values: reject (default; lists the lines), ffill, zero, or keep as gaps.")] = "reject",
    timestamps: Annotated[Literal["strict", "index"], typer.Option(
        help="strict: times must strictly increase; index: ignore the timestamp column, use the row number.")] = "strict",
) -> None:
    """Import series. Each run is one transaction: any bad file leaves the database unchanged."""
    from app.datasets.reader import ImportOptions
    from app.datasets.service import data_files, import_files

    settings = _settings()
    options = ImportOptions(
        label_column=label_column or None, label_column_required=label_column not in ("", "label"),
        timestamp_column=timestamp_column or None,
        timestamp_column_required=timestamp_column not in ("", "timestamp"),
        exclude_columns=tuple(exclude_column), fill=fill, timestamps=timestamps, chunk_points=settings.chunk_points,
    )
    db = _database(settings)
    try:
        files = [f for p in paths for f in data_files(p)]
        name = dataset or _default_dataset_name(paths[0])
        with db.session_scope() as session:
            imported = import_files(session, files, name, options)
    except AppError as exc:
        _fail(exc.message)
    for item in imported:
        gt = f", {item.n_anomalous_points:,} anomalous points (ground truth)" if item.has_ground_truth else ""
        typer.echo(f"{item.dataset}/{item.name}: {item.n_points:,} points, {item.n_channels} channel(s){gt} "
                   f"[series {item.series_id}]")


def _default_dataset_name(path: Path) -> str:
    from app.datasets.reader import series_name

    return path.name if path.is_dir() else series_name(path)


@cli.command("create-user")
def create_user_cmd(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, - _ .).")],
    role: Annotated[Literal["admin", "analyst"], typer.Option(help="admin: everything; analyst: label and view.")],
    password: Annotated[str | None, typer.Option(help="At least 8 characters; prompted when omitted.")] = None,
) -> None:
    """Create a user who signs in at /login."""
    from app.accounts.service import create_user

    if password is None:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            _fail("the passwords differ")
    db = _database(_settings())
    try:
        with db.session_scope() as session:
            user = create_user(session, name, role, password)
            typer.echo(f"created {user.role} {user.username!r} (id {user.id})")
    except AppError as exc:
        _fail(exc.message)


def _mount_optional() -> None:
    try:
        from app.bench.cli import bench_app
    except ModuleNotFoundError:
        return
    cli.add_typer(bench_app, name="bench", help="Benchmarks on labeled data (no server needed).")


_mount_optional()


def main() -> None:
    try:
        cli()
    except AppError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
