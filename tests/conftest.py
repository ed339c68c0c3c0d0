"""Shared fixtures: a host per test on SQLite (a fresh file) and on PostgreSQL (a database made
for this run, emptied between tests).

PostgreSQL is the machine's server (``TEST_POSTGRES_URL``, default the local ``test``
database). Tests marked ``postgres`` or ``integration`` never skip: if the server is missing the
run fails and says so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from services_ai_plugins.config import Config, reset_config
from services_ai_plugins.host import Host
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import Base
from tests.helpers import make_config
from tests.postgres import database_url_of, throwaway_database


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's own configuration."""
    for name in list(os.environ):
        if name.startswith("SERVICES_AI_") or name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL"):
            monkeypatch.delenv(name, raising=False)
    reset_config()
    yield
    reset_config()


# -- databases ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating per test would be slow)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of its own for this test run, migrated once, dropped at the end."""
    with throwaway_database("sai_test") as name:
        yield database_url_of(name)


def empty_postgres(db: Database) -> None:
    tables = [t.name for t in Base.metadata.sorted_tables if t.name != "registry_state"]
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(text("UPDATE registry_state SET revision = 0"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "services_ai.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
    else:
        url: str = request.getfixturevalue("postgres_database")
        db = Database(url)
        empty_postgres(db)
        db.dispose()
        yield url


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    return make_config(tmp_path / "data", database_url)


@pytest.fixture
def host(config: Config) -> Iterator[Host]:
    h = Host(config)
    h.ready()
    yield h
    h.close()


@pytest.fixture
def sqlite_host(tmp_path: Path, sqlite_template: Path) -> Iterator[Host]:
    """A host on SQLite only, for tests about things the backend cannot change."""
    path = tmp_path / "services_ai.db"
    shutil.copyfile(sqlite_template, path)
    h = Host(make_config(tmp_path / "data", f"sqlite:///{path}"))
    h.ready()
    yield h
    h.close()
