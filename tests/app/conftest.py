"""App fixtures: a real app on the test database with an admin and an analyst, signed in through /login."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.accounts.service import create_user
from app.settings import Settings
from app.web import create_app

PASSWORDS = {"admin": "admin-password-1", "analyst": "analyst-password-1"}


@pytest.fixture
def settings(database, tmp_path) -> Settings:
    # the app's sweeper looks once at start, not every 15 s: a test that moves a round's review time decides itself
    # when a sweep comes (tests/app/test_review.py)
    return Settings(database_url=database.url, data_dir=tmp_path, broker_url=None, sweep_every_s=3600)


@pytest.fixture
def app(settings, database):
    with database.session_scope() as session:
        for role, password in PASSWORDS.items():
            create_user(session, role, role, password)
    return create_app(settings, database)


def sign_in(client: TestClient, role: str) -> str:
    """Sign in through the form; returns the page's CSRF token (sent as X-CSRF-Token on writes)."""
    response = client.post("/login", data={"username": role, "password": PASSWORDS[role], "next": "/"})
    assert response.status_code == 200, response.text  # followed the 303 to the home page
    token = re.search(r'name="csrf-token" content="([^"]+)"', response.text)
    assert token, "signed-in pages carry the CSRF token"
    client.headers["X-CSRF-Token"] = token.group(1)
    return token.group(1)


@pytest.fixture
def admin_client(app) -> Iterator[TestClient]:
    with TestClient(app) as client:
        sign_in(client, "admin")
        yield client


@pytest.fixture
def analyst_client(app) -> Iterator[TestClient]:
    with TestClient(app) as client:
        sign_in(client, "analyst")
        yield client


@pytest.fixture
def anonymous_client(app) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client
