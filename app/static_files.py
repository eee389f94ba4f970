"""Static files with versioned URLs and long-lived caching.

Templates write ``{{ static_url('label.js') }}``, which gives ``/static/label.js?v=<content hash>``. A request that
carries ``v`` is answered with ``Cache-Control: public, max-age=31536000, immutable``: the browser never asks again,
and a changed file gets a new hash, hence a new URL. A request without ``v`` is answered ``no-cache`` (revalidated
by ETag), so an unversioned URL never serves a stale file.

Compressible files are gzipped once, kept in memory (keyed by path, size and mtime) and served to clients that
accept gzip, so the 1.2 MB Plotly bundle is not recompressed on every cold page load; the app's GZipMiddleware
leaves a response that already has a Content-Encoding alone.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
COMPRESSIBLE = (".js", ".css", ".svg", ".json", ".txt", ".map", ".html")
MIN_GZIP_BYTES = 2048
MAX_GZIP_BYTES = 8 * 1024 * 1024  # larger files are left to the middleware (none today)


def _stamp(stat_result: os.stat_result) -> tuple[int, int]:
    return stat_result.st_size, stat_result.st_mtime_ns


class CachedStaticFiles(StaticFiles):
    """StaticFiles with the cache policy above and gzip-once for text assets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gz: dict[str, tuple[tuple[int, int], bytes]] = {}
        self._lock = threading.Lock()

    def file_response(
        self, full_path: Any, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        request_headers = Headers(scope=scope)
        cache_control = IMMUTABLE if b"v=" in scope.get("query_string", b"") else REVALIDATE
        path = str(full_path)
        if (
            status_code == 200
            and path.endswith(COMPRESSIBLE)
            and "gzip" in request_headers.get("accept-encoding", "")
            and MIN_GZIP_BYTES <= stat_result.st_size <= MAX_GZIP_BYTES
        ):
            body = self._gzipped(path, stat_result)
            plain = FileResponse(path, stat_result=stat_result)  # for its ETag, Last-Modified and media type
            headers = {
                "etag": plain.headers["etag"][:-1] + '-gz"',
                "last-modified": plain.headers["last-modified"],
                "cache-control": cache_control,
                "content-encoding": "gzip",
                "vary": "Accept-Encoding",
            }
            if self.is_not_modified(Headers(headers=headers), request_headers):
                return NotModifiedResponse(Headers(headers=headers))
            return Response(body, media_type=plain.media_type, headers=headers)
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = cache_control
        return response

    def _gzipped(self, path: str, stat_result: os.stat_result) -> bytes:
        stamp = _stamp(stat_result)
        cached = self._gz.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with self._lock:
            cached = self._gz.get(path)
            if cached is None or cached[0] != stamp:
                # mtime=0: the same bytes for the same file, whatever the time it was compressed
                cached = (stamp, gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0))
                self._gz[path] = cached
        return cached[1]


class StaticURLs:
    """``static_url(name)`` for templates: ``/static/<name>?v=<first 10 hex of the file's SHA-256>``."""

    def __init__(self, directory: Path, prefix: str = "/static") -> None:
        self.directory = Path(directory).resolve()
        self.prefix = prefix.rstrip("/")
        self._hashes: dict[str, tuple[tuple[int, int], str]] = {}

    def __call__(self, name: str) -> str:
        path = (self.directory / name).resolve()
        if self.directory not in path.parents:
            raise ValueError(f"static_url: {name!r} is outside the static folder")
        stat_result = path.stat()  # a missing asset fails the page loudly instead of a silent 404 in the browser
        stamp = _stamp(stat_result)
        cached = self._hashes.get(name)
        if cached is None or cached[0] != stamp:
            cached = (stamp, hashlib.sha256(path.read_bytes()).hexdigest()[:10])
            self._hashes[name] = cached
        return f"{self.prefix}/{name}?v={cached[1]}"


def mount_static(app: Any, directory: Path) -> None:
    """Mount ``directory`` at /static with the policy above and give the app's templates ``static_url``."""
    app.mount("/static", CachedStaticFiles(directory=str(directory)), name="static")
    app.state.templates.env.globals["static_url"] = StaticURLs(directory)
