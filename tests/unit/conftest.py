"""Fixtures shared by the in-process app tests (the app with a fake Label Studio gateway)."""

from __future__ import annotations

import pytest

from backend.config import ProjectPolicy, Settings
from backend.web.app import create_app
from tests.unit.test_app import FakeGateway, make_tasks


@pytest.fixture
def app_env(tmp_path):
    settings = Settings(
        model_dir=tmp_path / "models",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        policy=ProjectPolicy(retrain_every=3, validation_fraction=0.25),
        label_studio_url="http://label-studio.invalid",
        label_studio_api_key="x" * 40,
    )
    app = create_app(settings, start_jobs=False, migrate=True)
    services = app.extensions["labelloop"]
    gateway = FakeGateway(make_tasks(24, 10))
    services.gateway_for = lambda project: gateway
    yield app.test_client(), services, gateway
    services.stop()
    services.store.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh database on SQLite, and on PostgreSQL (the postgres_url fixture of tests/conftest.py)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite3'}"
    return request.getfixturevalue("postgres_url")
