"""The migrations create exactly the schema the models describe, on SQLite and PostgreSQL, and
upgrading twice is harmless."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import Base


def test_migrations_match_the_models(database_url: str) -> None:
    db = Database(database_url)
    assert db.current_revision() == db.head_revision()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    assert diff == []


def test_upgrade_is_safe_to_run_again(database_url: str) -> None:
    db = Database(database_url)
    head = db.head_revision()
    assert db.upgrade() == (head, head)
    db.dispose()
