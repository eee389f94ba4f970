"""The Celery app for ``celery -A worker.celery_app worker`` (``anomaloop worker`` builds the same app itself).

The app is built by :func:`app.jobs.celery_app.make_celery`; this module only gives Celery's command line the
module-level app it looks for. ``worker`` imports ``app``; ``app`` never imports ``worker``.
"""

from __future__ import annotations

from app.jobs.celery_app import default_app, make_celery

__all__ = ["app", "make_celery"]

app = default_app()
