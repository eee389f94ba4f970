"""Property-based fuzz of the whole OpenAPI document with schemathesis, against the real app served by uvicorn on
loopback, on SQLite and on PostgreSQL, with a valid admin token: no 500, and every response fits its documented
schema (body and content type).

Two passes per operation: one with every parameter generated (mostly unknown ids: the 404 paths and the validation
of every field), one with the path ids pinned to real rows seeded first (a data set, a project with a fitted model,
an open round and its queries), so the generated query strings and bodies reach the code behind the lookups. Each
pass sends a few valid and a few invalid examples per operation; every example is checked (a failure does not stop
the run, so one systematic problem cannot hide another) and each distinct failure is reported once, with the
request as a curl command to replay. No shrinking. About a minute per database on an idle 2-core machine.

Excluded, and why (matched on method and path template):
- ``POST /api/v1/projects``: every valid example creates a project and starts its initial fit, a training job each
  (the default detector trains the deep ensemble members): minutes of CPU per example. Its validation is covered by
  tests/app/test_api_loop.py and the error-shape tests.
- Revoking tokens, disabling or enabling users and setting their passwords: an example that hits the fuzzer's own
  token or user (ids start at 1) would turn every later request into a 401 and test nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from app.datasets.reader import ImportOptions
from app.datasets.service import import_files
from tests.app.hardening_server import make_user, running_server

pytestmark = pytest.mark.slow

EXAMPLES = {GenerationMode.POSITIVE: 6, GenerationMode.NEGATIVE: 3}
"""Examples per operation, per pass, per mode: ~40 operations x 2 passes x 9 = ~700 requests per database."""
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
EXCLUDED = [
    (r"POST", r"/api/v1/projects"),
    (r"DELETE", r"/api/v1/tokens/.*"),
    (r"POST", r"/api/v1/tokens/.*/revoke"),
    (r"(POST|PUT|PATCH|DELETE)", r"/api/v1/users/.*"),
]
PROJECT = {"name": "fuzz", "detector": "iforest", "window": 25, "strategy": "top_k", "round_size": 3, "budget": 30}


@dataclass
class Seeded:
    """Ids of real rows, by path parameter name."""

    ids: dict[str, int] = field(default_factory=dict)


def _excluded(method: str, path: str) -> bool:
    return any(re.fullmatch(m, method.upper()) and re.fullmatch(p, path) for m, p in EXCLUDED)


def _write_series(path: Path, n: int = 2_000) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(n)
    values = np.sin(t / 30.0) + 0.1 * rng.normal(size=n)
    values[1_200:1_220] += 4.0
    stamps = np.datetime64("2024-01-01T00:00:00") + t.astype("timedelta64[m]")
    lines = ["timestamp,value,label"] + [
        f"{s},{v:.5f},{int(1_200 <= i < 1_220)}" for i, (s, v) in enumerate(zip(stamps, values, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n")


def _seed(database, tmp_path: Path, url: str, token: str) -> Seeded:  # type: ignore[no-untyped-def]
    """A data set with one 2,000-point series, an iforest project whose initial model is fitted, an open round."""
    _write_series(tmp_path / "fuzz.csv")
    with database.session_scope() as session:
        [imported] = import_files(session, [tmp_path / "fuzz.csv"], "fuzzdata", ImportOptions())
    seeded = Seeded({"series_id": imported.series_id})
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        dataset_id = next(d["id"] for d in client.get("/api/v1/datasets").json() if d["name"] == "fuzzdata")
        seeded.ids["dataset_id"] = dataset_id
        r = client.post("/api/v1/projects", json={**PROJECT, "dataset_id": dataset_id})
        assert r.status_code == 201, r.text
        project_id = seeded.ids["project_id"] = r.json()["id"]
        deadline = time.monotonic() + 120
        while not (versions := client.get(f"/api/v1/projects/{project_id}/versions").json()):
            assert time.monotonic() < deadline, "the initial model was not fitted within 2 minutes"
            time.sleep(0.3)
        seeded.ids["version_id"] = versions[0]["id"]
        r = client.post(f"/api/v1/projects/{project_id}/rounds", json={})
        assert r.status_code == 201, r.text
        round_id = seeded.ids["round_id"] = r.json()["id"]
        queries = client.get(f"/api/v1/rounds/{round_id}/queries").json()
        seeded.ids["query_id"] = queries[0]["id"]
        jobs = client.get("/api/v1/jobs").json()
        if jobs:
            seeded.ids["job_id"] = jobs[0]["id"]
    return seeded


def _fuzz_operation(operation, url: str, auth: dict[str, str], pinned: dict[str, int] | None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Run the examples of one operation, every one of them checked (a failure does not stop the run, so one
    systematic problem cannot hide another); returns one report per distinct failure: {key: report}."""
    found: dict[str, str] = {}
    for mode, count in EXAMPLES.items():
        where = f"{operation.label} [{mode.value}{', pinned ids' if pinned else ''}]"
        _examples(operation.as_strategy(generation_mode=mode, path_parameters=pinned or None), count, where, found)(
            url, auth, operation.label
        )
    return found


def _examples(strategy, count: int, where: str, found: dict[str, str]):  # type: ignore[no-untyped-def]
    """A function that sends ``count`` generated cases and records each distinct failure in ``found``."""

    def run_all(url: str, auth: dict[str, str], label: str) -> None:
        @given(case=strategy)
        @settings(
            max_examples=count,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            try:
                response = case.call(base_url=url, headers=auth, timeout=30)
                case.validate_response(response, checks=CHECKS, headers=auth)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported together at the end
                text = str(exc)
                kinds = re.findall(r"^- (ST\d+ [^\n]*)", text, flags=re.M) or [
                    text.splitlines()[0] if text else repr(exc)
                ]
                found.setdefault(f"{label}: {'; '.join(sorted(kinds))}", f"{where}:\n{text}")

        run()

    return run_all


@pytest.fixture
def fuzz_server(database, tmp_path) -> Iterator[tuple[str, str, Seeded]]:  # type: ignore[no-untyped-def]
    token = make_user(database, "fuzzadmin", "admin", ["admin"])
    assert token
    with running_server(database, tmp_path) as server:
        seeded = _seed(database, tmp_path, server.url, token)
        yield server.url, token, seeded


def test_every_operation_survives_generated_requests(fuzz_server):
    url, token, seeded = fuzz_server
    schema = schemathesis.openapi.from_url(url + "/api/openapi.json")
    auth = {"Authorization": f"Bearer {token}"}
    failures: dict[str, str] = {}
    fuzzed, skipped = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        if _excluded(operation.method, operation.path):
            skipped.append(operation.label)
            continue
        fuzzed.append(operation.label)
        failures.update(_fuzz_operation(operation, url, auth, None))
        names = {p.name for p in operation.path_parameters}
        pinned = {name: seeded.ids[name] for name in names if name in seeded.ids}
        if pinned:
            for key, report in _fuzz_operation(operation, url, auth, pinned).items():
                failures.setdefault(key, report)
    assert len(fuzzed) >= 20, fuzzed
    summary = "\n".join(sorted(failures))
    assert not failures, f"{len(failures)} distinct failures in {len(fuzzed)} operations fuzzed:\n{summary}\n\n" + (
        "\n\n".join(failures[key] for key in sorted(failures))
    )
