"""anomaloop command line: serve | worker | migrate | import | user | token | project | bench."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer
from sqlalchemy.engine import make_url

from app.accounts import service as accounts
from app.datasets import service as datasets
from app.datasets.reader import ImportOptions, series_name
from app.db import Database
from app.demo import load_demo
from app.errors import AppError
from app.jobs import service as jobs
from app.jobs.executor import make_executor
from app.observability import shared_metrics_dir
from app.projects import service as projects
from app.projects.schemas import ProjectCreate
from app.serving import reuse_port_supported, serve_processes
from app.settings import Settings
from app.versions import service as versions

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


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _database(settings: Settings) -> Database:
    return Database(settings.sqlalchemy_url, settings.pool_options())


@cli.command()
def migrate() -> None:
    """Bring the database (ANOMALOOP_DATABASE_URL, default a SQLite file in ANOMALOOP_DATA_DIR) to the newest schema."""
    from app.migrate import upgrade  # Alembic loads only for the commands that migrate

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)
    typer.echo(f"database at head: {_redact(settings.sqlalchemy_url)}")


def _redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo/--no-demo",
            help="On an empty database, import the shipped NAB "
            "demo series and create demo users (credentials printed).",
        ),
    ] = True,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Run migrations before serving.")
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Web processes on the one port (default ANOMALOOP_WEB_WORKERS, 1)."),
    ] = None,
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"],
        typer.Option(help="uvicorn's log level; 'info' logs every request."),
    ] = "info",
) -> None:
    """Serve the web app and the REST API (with the in-process worker unless ANOMALOOP_BROKER_URL is set)."""
    # the web stack (FastAPI, Starlette, Jinja, uvicorn) and Alembic load only for `serve`
    import uvicorn

    from app.migrate import upgrade
    from app.web import create_app

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate_first:
        upgrade(settings.sqlalchemy_url)
    db = _database(settings)
    if demo:
        _prepare_demo(settings, db)
    n_web = workers or settings.web_workers
    mode = f"Celery broker {_redact(settings.broker_url)}" if settings.broker_url else "in-process worker"
    processes = f", {n_web} web processes" if n_web > 1 else ""
    typer.echo(f"anomaloop on http://{host}:{port} — database {_redact(settings.sqlalchemy_url)}, {mode}{processes}")
    if n_web == 1:
        uvicorn.run(create_app(settings, db), host=host, port=port, log_level=log_level)
        return
    db.dispose()  # each process opens its own pool; none is inherited
    with shared_metrics_dir(settings.data_dir):
        # each process starts afresh (spawn) and builds its app from the same environment: create_app()
        if reuse_port_supported():
            serve_processes(n_web, host, port, log_level)
        else:  # no SO_REUSEPORT (Windows): uvicorn's workers, which share one socket (see app/serving.py)
            uvicorn.run("app.web:create_app", factory=True, workers=n_web, host=host, port=port, log_level=log_level)


def _prepare_demo(settings: Settings, db: Database) -> None:
    creds_file = settings.data_dir / "demo-credentials.json"
    with db.session_scope() as session:
        imported = load_demo(session)
        for item in imported:
            typer.echo(f"demo: imported {item.dataset}/{item.name} ({item.n_points:,} points)")
        created = None
        if accounts.count_users(session) == 0:
            created = {"admin": secrets.token_urlsafe(12), "analyst": secrets.token_urlsafe(12)}
            for role, password in created.items():
                accounts.create_user(session, role, role, password)
    if created is not None:
        # Written only after the users are committed, atomically (a temporary file then rename) and readable by
        # the owner alone; printed this once. Later starts only say where the file is.
        _write_private(creds_file, json.dumps(created))
        typer.echo(
            "demo users: "
            + ", ".join(f"{u} / {p}" for u, p in created.items())
            + f"  (printed once; kept in {creds_file}, mode 0600)"
        )
    elif creds_file.exists():
        typer.echo(f"demo users: admin and analyst; their passwords are in {creds_file}")


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 atomically: never a moment when it is partly written or world-readable."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@cli.command("import")
def import_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="CSV, CSV.gz or Parquet files, or folders of them (shared/data layout, .train/.test pairs included)."
        ),
    ],
    dataset: Annotated[
        str | None, typer.Option(help="Data set to import into (created if new); default the folder or file name.")
    ] = None,
    label_column: Annotated[
        str, typer.Option(help="0/1 ground-truth column, stored apart from analyst labels; '' for none.")
    ] = "label",
    timestamp_column: Annotated[
        str,
        typer.Option(
            help="Timestamp column: ISO-8601, unix seconds or any increasing number; '' to use the row number."
        ),
    ] = "timestamp",
    exclude_column: Annotated[
        list[str], typer.Option(help="A column that is neither a channel nor the label (repeatable).")
    ] = ["changepoint"],  # noqa: B006
    fill: Annotated[
        Literal["reject", "ffill", "zero", "keep"],
        typer.Option(help="NaN/inf values: reject (default; lists the lines), ffill, zero, or keep as gaps."),
    ] = "reject",
    timestamps: Annotated[
        Literal["strict", "index"],
        typer.Option(
            help="strict: times must strictly increase; index: ignore the timestamp column, use the row number."
        ),
    ] = "strict",
) -> None:
    """Import series. Each run is one transaction: any bad file leaves the database unchanged."""
    settings = _settings()
    options = ImportOptions(
        label_column=label_column or None,
        label_column_required=label_column not in ("", "label"),
        timestamp_column=timestamp_column or None,
        timestamp_column_required=timestamp_column not in ("", "timestamp"),
        exclude_columns=tuple(exclude_column),
        fill=fill,
        timestamps=timestamps,
        chunk_points=settings.chunk_points,
    )
    db = _database(settings)
    try:
        files = [f for p in paths for f in datasets.data_files(p)]
        name = dataset or _default_dataset_name(paths[0])
        with db.session_scope() as session:
            imported = datasets.import_files(session, files, name, options)
    except AppError as exc:
        _fail(exc.message)
    for item in imported:
        gt = f", {item.n_anomalous_points:,} anomalous points (ground truth)" if item.has_ground_truth else ""
        typer.echo(
            f"{item.dataset}/{item.name}: {item.n_points:,} points, {item.n_channels} channel(s){gt} "
            f"[series {item.series_id}]"
        )


def _default_dataset_name(path: Path) -> str:
    return path.name if path.is_dir() else series_name(path)


# -- users and API tokens ----------------------------------------------------------------------------------------

user_cli = typer.Typer(
    help="Users: create, list, disable, enable, set a password (passwords are prompted, never echoed).",
    no_args_is_help=True,
)
cli.add_typer(user_cli, name="user")
token_cli = typer.Typer(help="API tokens: create (the secret is printed once), list, revoke.", no_args_is_help=True)
cli.add_typer(token_cli, name="token")

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input instead of a prompt."
    ),
]


def _read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice at a hidden prompt."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            _fail("--password-stdin: standard input gave no password")
        return password
    password = typer.prompt("password", hide_input=True)
    if typer.prompt("again", hide_input=True) != password:
        _fail("the passwords differ")
    return password


@user_cli.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, - _ .).")],
    role: Annotated[Literal["admin", "analyst"], typer.Option(help="admin: everything; analyst: label and view.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user who signs in at /login."""
    _create_user(name, role, _read_password(password_stdin))


def _create_user(name: str, role: str, password: str) -> None:
    db = _database(_settings())
    try:
        with db.session_scope() as session:
            user = accounts.add_user(session, None, name, role, password)
            typer.echo(f"created {user.role} {user.username!r} (id {user.id})")
    except AppError as exc:
        _fail(exc.message)


@cli.command("create-user")
def create_user_cmd(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, - _ .).")],
    role: Annotated[Literal["admin", "analyst"], typer.Option(help="admin: everything; analyst: label and view.")],
    password: Annotated[
        str | None, typer.Option(help="At least 8 characters; prompted when omitted (safer: not in shell history).")
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user who signs in at /login (the same as `anomaloop user create`)."""
    _create_user(name, role, password if password is not None else _read_password(password_stdin))


@user_cli.command("list")
def user_list() -> None:
    """Every user: id, name, role, active or disabled."""
    db = _database(_settings())
    with db.session_scope() as session:
        for u in accounts.list_users(session):
            typer.echo(f"{u.id:>4}  {u.username:<24} {u.role:<8} {'active' if u.is_active else 'disabled'}")


def _user_action(name: str, action: str) -> None:
    db = _database(_settings())
    try:
        with db.session_scope() as session:
            user = accounts.find_user(session, name)
            if action == "disable":
                accounts.disable_user(session, None, user.id)
                typer.echo(f"disabled {user.username!r}: its sessions ended and its API tokens were revoked")
            else:
                accounts.enable_user(session, None, user.id)
                typer.echo(f"enabled {user.username!r} (its old API tokens stay revoked)")
    except AppError as exc:
        _fail(exc.message)


@user_cli.command("disable")
def user_disable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Disable a user: no sign-in; its browser sessions end and every API token of it is revoked."""
    _user_action(name, "disable")


@user_cli.command("enable")
def user_enable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Let a disabled user sign in again (create new tokens for it: the old ones stay revoked)."""
    _user_action(name, "enable")


@user_cli.command("set-password")
def user_set_password(
    name: Annotated[str, typer.Argument(help="User name.")], password_stdin: PasswordStdin = False
) -> None:
    """Set a user's password; its browser sessions end (its API tokens stay valid)."""
    password = _read_password(password_stdin)
    db = _database(_settings())
    try:
        with db.session_scope() as session:
            user = accounts.find_user(session, name)
            accounts.set_password(session, None, user.id, password)
            typer.echo(f"set the password of {user.username!r}; its browser sessions ended")
    except AppError as exc:
        _fail(exc.message)


@token_cli.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="User name the token acts as.")],
    name: Annotated[str, typer.Option(help="What the token is for (shown in lists).")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: read, write, admin (read ⊂ write ⊂ admin; admin for admins only).")
    ] = "read",
    expires_days: Annotated[
        int | None, typer.Option(help="Refused after this many days; default: valid until revoked.")
    ] = None,
) -> None:
    """Create an API token. The secret alone goes to standard output, once (TOKEN=$(anomaloop token create ...));
    what it is goes to standard error. Only its hash is stored."""
    db = _database(_settings())
    try:
        with db.session_scope() as session:
            owner = accounts.find_user(session, user)
            token, plain = accounts.issue_token(
                session,
                None,
                name,
                accounts.parse_scopes(scopes),
                user_id=owner.id,
                expires_in_days=expires_days,
            )
            expiry = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "no expiry"
            summary = (
                f"created token {token.id} {token.name!r} for {owner.username!r}: {', '.join(token.scopes)}, {expiry}"
            )
    except AppError as exc:
        _fail(exc.message)
    typer.echo(summary + " (the secret is printed once, below)", err=True)
    typer.echo(plain)


@token_cli.command("list")
def token_list(user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None) -> None:
    """Tokens (never their secrets): id, prefix, owner, scopes, created, last used, expiry, status."""
    db = _database(_settings())
    try:
        with db.session_scope() as session:
            user_id = accounts.find_user(session, user).id if user else None
            tokens = accounts.list_api_tokens(session, user_id)
    except AppError as exc:
        _fail(exc.message)

    def when(moment: datetime | None, none: str) -> str:
        return f"{moment:%Y-%m-%d %H:%M}" if moment else none

    typer.echo(f"{'id':>4}  {'name':<20} {'prefix':<13} {'owner':<14} {'scopes':<17} {'created':<16}  "
               f"{'last used':<16}  {'expires':<16}  status")  # fmt: skip
    for t in tokens:
        typer.echo(
            f"{t.id:>4}  {t.name[:20]:<20} {t.prefix:<13} {t.username[:14]:<14} {','.join(t.scopes):<17} "
            f"{when(t.created_at, ''):<16}  {when(t.last_used_at, 'never'):<16}  {when(t.expires_at, 'never'):<16}  "
            f"{t.status}"
        )


@token_cli.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="Token id (from `anomaloop token list`).")]) -> None:
    """Revoke a token at once: its next request gets 401."""
    db = _database(_settings())
    try:
        with db.session_scope() as session:
            token = accounts.revoke_api_token(session, None, token_id, as_admin=True)
            typer.echo(f"revoked token {token.id} {token.name!r}")
    except AppError as exc:
        _fail(exc.message)


@cli.command()
def worker(
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues; default 'gpu,cpu,webhooks' when CUDA is present, else 'cpu,webhooks'. "
            "'webhooks' alone: a worker of network threads that only delivers webhooks."
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Jobs at once (default 1: solo pool; a webhooks-only worker: ANOMALOOP_WEBHOOK_WORKERS)."),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Start a Celery worker for training jobs (needs ANOMALOOP_BROKER_URL). One job at a time (--pool=solo): CUDA
    is not fork-safe. A job trains with ANOMALOOP_TRAIN_THREADS CPU threads (1 by default), so on a many-core machine
    run several workers to train several rounds at once, or raise that setting for one worker. Webhook deliveries
    have a queue of their own: a training worker takes them between fits; `--queues webhooks` starts a worker that
    delivers them at once, in threads, whatever is training."""
    settings = _settings()
    if not settings.broker_url:
        _fail("ANOMALOOP_BROKER_URL is not set; without a broker `anomaloop serve` runs jobs in-process")
    if concurrency is not None and concurrency < 1:
        _fail("--concurrency must be at least 1")
    # NVML-based check: asks the driver how many GPUs exist without creating a CUDA context in this process.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch  # here: after the variable above is set, and only for the command that needs a device

    cuda = settings.device != "cpu" and torch.cuda.is_available()
    queue_list = queues or ("gpu,cpu" if cuda else "cpu") + "," + settings.webhook_queue
    from app.jobs.celery_app import make_celery  # Celery loads only for `worker`

    app = make_celery(settings)
    if queue_list.split(",") == [settings.webhook_queue]:
        # deliveries wait on the network, not the CPU: threads, as many as the in-process executor uses
        pool, concurrency = "threads", concurrency or settings.webhook_workers
    else:
        concurrency = concurrency or 1
        pool = "solo" if concurrency == 1 or cuda else "prefork"
    app.worker_main(
        [
            "worker",
            f"--queues={queue_list}",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--hostname=anomaloop-{queue_list.replace(',', '-')}-{os.getpid()}@%h",
        ]
    )


project_cli = typer.Typer(
    help="Projects: create, run rounds with the ground-truth oracle, show status.", no_args_is_help=True
)
cli.add_typer(project_cli, name="project")


@project_cli.command("create")
def project_create(
    dataset: Annotated[str, typer.Option(help="Data set name.")],
    detector: Annotated[
        str, typer.Option(help="ensemble (the default), rlad, iforest, ae, vae, lstm_ae, lstm_vae, usad, transformer.")
    ] = "ensemble",
    name: Annotated[str | None, typer.Option(help="Project name; default '<dataset>-<detector>-<n>'.")] = None,
    series: Annotated[list[str], typer.Option(help="Series name to use (repeatable); default all.")] = [],  # noqa: B006
    strategy: Annotated[
        str | None,
        typer.Option(
            help="Query strategy; default: the detector's own (margin for rlad, hybrid for the "
            "reconstruction backbones)."
        ),
    ] = None,
    round_size: Annotated[int, typer.Option(help="Queries per round.")] = 10,
    budget: Annotated[int, typer.Option(help="Most windows labeled in all.")] = 100,
    window: Annotated[
        int | None, typer.Option(help="Window length; default: the detector's (25, 50 for reconstruction backbones).")
    ] = None,
    stride: Annotated[int, typer.Option(help="Step between windows.")] = 1,
    oracle: Annotated[Literal["human", "ground_truth"], typer.Option(help="Who answers queries.")] = "human",
    auto_next: Annotated[
        bool, typer.Option("--auto-next/--no-auto-next", help="Open the next round as soon as a version is stored.")
    ] = False,
    holdout: Annotated[
        float, typer.Option(help="Fraction at the end of each series never queried (evaluation).")
    ] = 0.0,
    param: Annotated[list[str], typer.Option(help="Detector parameter KEY=VALUE (JSON value), repeatable.")] = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="Seed for the model and the strategy.")] = 0,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait", help="Run the initial fit now (in this process when no broker is set) and wait for it."
        ),
    ] = True,
) -> None:
    """Create a project and fit its initial unsupervised model; prints the project id."""
    settings = _settings()
    db = _database(settings)
    try:
        with db.session_scope() as session:
            ds = datasets.find_dataset(session, dataset)
            if ds is None:
                _fail(f"no data set named {dataset!r}")
            ids = None
            if series:
                by_name = {s.name: s.id for s in ds.series}
                unknown = [s for s in series if s not in by_name]
                if unknown:
                    _fail(f"data set {dataset!r} has no series {unknown}")
                ids = [by_name[s] for s in series]
            params = {}
            for item in param:
                key, _, value = item.partition("=")
                try:
                    params[key] = json.loads(value)
                except json.JSONDecodeError:
                    params[key] = value
            spec = ProjectCreate(
                name=name or f"{dataset}-{detector}-{secrets.token_hex(2)}",
                dataset_id=ds.id,
                series_ids=ids,
                detector=detector,
                detector_params=params,
                window=window or None,  # None: the detector's default_window
                stride=stride,
                strategy=strategy or None,  # None: the detector's default_strategy
                round_size=round_size,
                budget=budget,
                auto_next=auto_next,
                oracle=oracle,
                holdout_fraction=holdout,
                seed=seed,
            )
            project, job_id = projects.create_project(session, None, spec)
            project_id = project.id
    except AppError as exc:
        _fail(exc.message)
    except ValueError as exc:  # pydantic validation
        _fail(str(exc).splitlines()[-1] if str(exc) else "invalid project settings")
    typer.echo(project_id)
    _drive(settings, db, [job_id], wait)


def _drive(settings: Settings, db: Database, job_ids: list[int], wait: bool) -> None:
    """Run jobs: in this process without a broker, else hand them to Celery; with ``wait``, until all are done."""
    executor = make_executor(settings, db)
    try:
        for job_id in job_ids:
            executor.enqueue(job_id)
        if not wait:
            return
        while True:
            with db.session_scope() as session:
                active = [j for j in jobs.list_jobs(session, limit=20) if j.status in ("queued", "running")]
                failed = [j for j in jobs.list_jobs(session, limit=20) if j.id in job_ids and j.status == "failed"]
            if failed:
                _fail(f"job {failed[0].id} failed: {failed[0].error}")
            if not active:
                return
            time.sleep(0.2)
    finally:
        if hasattr(executor, "wait_idle"):
            executor.wait_idle()
        executor.shutdown()


@project_cli.command("run")
def project_run(
    project_id: Annotated[int, typer.Argument(help="Project id.")],
    rounds: Annotated[int, typer.Option(help="Rounds to run.")] = 1,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for each retraining before the next round.")
    ] = True,
) -> None:
    """Drive rounds answered by the ground-truth oracle; prints one line per new model version."""
    settings = _settings()
    db = _database(settings)
    with db.session_scope() as session:
        project = projects.get_project(session, project_id)
        if project.oracle != "ground_truth":
            _fail("project run needs --oracle ground_truth; human projects are answered in the browser")
    seen: set[int] = set()
    for _ in range(rounds):
        try:
            with db.session_scope() as session:
                started = projects.start_round(session, None, project_id)
                job_ids = started.job_ids
        except AppError as exc:
            _fail(exc.message)
        _drive(settings, db, job_ids, wait)
        if not wait:
            return
        with db.session_scope() as session:
            for v in versions.list_versions(session, project_id):
                if v.id not in seen and v.round_number > 0:
                    seen.add(v.id)
                    typer.echo(_version_line(v))


def _version_line(v) -> str:  # type: ignore[no-untyped-def]
    shown = {
        k: v.metrics[k] for k in ("pr_auc", "roc_auc", "pa_k_auc", "f1_at_threshold", "labels_pr_auc") if k in v.metrics
    }
    return (
        f"version {v.id} round {v.round_number}: labels used {v.labels_used}, "
        + ", ".join(f"{k} {val:.3f}" for k, val in shown.items())
        + f" ({v.train_seconds:.1f} s on {v.device})"
    )


@project_cli.command("status")
def project_status(project_id: Annotated[int, typer.Argument(help="Project id.")]) -> None:
    """Rounds, jobs and model versions of a project."""
    db = _database(_settings())
    try:
        with db.session_scope() as session:
            p = projects.get_project(session, project_id)
            typer.echo(
                f"project {p.id} {p.name!r}: {p.detector}, {p.strategy}, round size {p.round_size}, "
                f"budget {p.budget}, labels used {projects.labels_used(session, p.id)}, oracle {p.oracle}"
            )
            for r in projects.list_rounds(session, p.id):
                typer.echo(f"  round {r.number}: {r.status}, {r.k} queries ({r.strategy})")
            for j in jobs.list_jobs(session, limit=20, project_id=p.id):
                typer.echo(
                    f"  job {j.id} {j.kind}: {j.status} {j.progress:.0f}% {j.message}"
                    + (f" — {j.error}" if j.error else "")
                )
            for v in versions.list_versions(session, p.id):
                star = " (serving)" if v.id == p.serving_version_id else ""
                typer.echo("  " + _version_line(v) + star)
    except AppError as exc:
        _fail(exc.message)


def _mount_optional() -> None:
    try:  # optional: an install without app/bench keeps every other command
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
    except Exception as exc:
        if os.environ.get("ANOMALOOP_DEBUG"):
            raise
        typer.echo(
            f"error: internal error ({type(exc).__name__}: {exc}); set ANOMALOOP_DEBUG=1 for the traceback", err=True
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
