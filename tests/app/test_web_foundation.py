"""The first pages and endpoints a newcomer meets: sign-in, data list, a series chart, import, errors, roles."""

from __future__ import annotations

import io

from app.demo import DEMO_DATASET, load_demo


def test_pages_need_sign_in_and_wrong_password_is_refused(anonymous_client):
    r = anonymous_client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/"
    r = anonymous_client.post("/login", data={"username": "admin", "password": "wrong-password"})
    assert r.status_code == 401 and "wrong user name or password" in r.text
    assert anonymous_client.get("/api/v1/datasets").status_code == 401
    r = anonymous_client.get("/api/v1/datasets", headers={"Authorization": "Bearer alp_not-a-token"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked API token"


def test_demo_data_listed_and_series_chart_page(admin_client, database):
    with database.session_scope() as session:
        imported = load_demo(session)
    assert {i.name for i in imported} == {
        "realKnownCause__nyc_taxi",
        "realKnownCause__ambient_temperature_system_failure",
    }
    home = admin_client.get("/")
    assert DEMO_DATASET in home.text and "realKnownCause__nyc_taxi" in home.text and "10,320" in home.text
    taxi = next(i for i in imported if i.name == "realKnownCause__nyc_taxi")
    page = admin_client.get(f"/series/{taxi.series_id}")
    assert page.status_code == 200
    assert 'src="/static/vendor/plotly-basic.min.js?v=' in page.text and "cdn" not in page.text.lower()
    js = admin_client.get("/static/vendor/plotly-basic.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000 and b"plotly" in js.content[:2000].lower()
    view = admin_client.get(f"/api/v1/series/{taxi.series_id}/view", params={"width": 400}).json()
    assert view["n_points"] == 10_320 and view["x_kind"] == "datetime"
    assert 0 < len(view["channels"][0]["y"]) <= 800  # ~2 points per pixel
    assert view["truth"] and all(a < b for a, b in view["truth"])
    zoom = admin_client.get(f"/api/v1/series/{taxi.series_id}/view", params={"start": 100, "end": 300}).json()
    assert zoom["channels"][0]["i"][0] == 100 and len(zoom["channels"][0]["y"]) == 200  # fewer points than pixels
    bad = admin_client.get(f"/api/v1/series/{taxi.series_id}/view", params={"channels": "3"})
    assert bad.status_code == 400 and "do not exist" in bad.json()["detail"]
    assert admin_client.get("/api/v1/series/99999/view").status_code == 404


def test_upload_form_and_api_report_bad_files_and_import_good_ones(admin_client, analyst_client):
    bad = {"file": ("bad.csv", io.BytesIO(b"timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T00:00:00,2\n"))}
    r = admin_client.post("/api/v1/datasets/import", files=bad, data={"dataset": "up"})
    assert r.status_code == 400 and "duplicate timestamps at line(s) 3" in r.json()["detail"]
    bad["file"][1].seek(0)
    r = admin_client.post("/admin/import", files=bad, data={"dataset": "up"})
    assert r.status_code == 400 and "duplicate timestamps" in r.text and "<form" in r.text
    assert admin_client.get("/api/v1/datasets").json() == []
    good = {"file": ("ok.csv", io.BytesIO(b"value,label\n1,0\n2,1\n3,0\n"))}
    r = admin_client.post("/admin/import", files=good, data={"dataset": "up"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/series/")
    [dataset] = admin_client.get("/api/v1/datasets").json()
    assert dataset["series"][0]["n_points"] == 3 and dataset["series"][0]["n_anomalous_points"] == 1
    good["file"][1].seek(0)
    r = analyst_client.post("/api/v1/datasets/import", files=good, data={"dataset": "x"})
    assert r.status_code == 403
    assert analyst_client.get("/admin/import").status_code == 403


def test_writes_without_the_csrf_token_are_refused(admin_client):
    del admin_client.headers["X-CSRF-Token"]
    r = admin_client.post("/api/v1/tokens", json={"name": "t", "scopes": ["read"]})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]


def test_api_token_is_shown_once_stored_hashed_and_scoped(admin_client, database):
    r = admin_client.post("/api/v1/tokens", json={"name": "ci", "scopes": ["read"]})
    assert r.status_code == 201
    plain = r.json()["token"]
    from sqlalchemy import select

    from app.accounts.models import ApiToken

    with database.session_scope() as s:
        stored = s.scalars(select(ApiToken)).one()
        assert plain not in (stored.token_hash, stored.prefix) and len(stored.token_hash) == 64
    from fastapi.testclient import TestClient

    with TestClient(admin_client.app) as api:
        api.headers["Authorization"] = f"Bearer {plain}"
        assert api.get("/api/v1/me").json()["username"] == "admin"
        r = api.post("/api/v1/tokens", json={"name": "x", "scopes": ["read"]})
        assert r.status_code == 403 and "read-only" in r.json()["detail"]
