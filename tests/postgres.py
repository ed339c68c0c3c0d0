"""Throwaway PostgreSQL databases for the tests, on the server at ``TEST_POSTGRES_URL``: made,
migrated, dropped (``WITH (FORCE)``: sessions of killed workers included)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

from services_ai_plugins.infra.db import Database, normalise_url
from tests.helpers import POSTGRES_URL

__all__ = ["database_url_of", "throwaway_database"]


def database_url_of(name: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def throwaway_database(
    prefix: str, template: str | None = None, purpose: str = "these tests"
) -> Iterator[str]:
    """A database of its own (a copy of ``template`` if given, else migrated here); its name.
    A server that does not answer fails the test loudly, never skips it."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    try:
        admin = create_engine(normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL is required by {purpose} and is not reachable at {POSTGRES_URL}: {exc}",
            pytrace=False,
        )
    try:
        if template is None:
            db = Database(database_url_of(name))
            db.upgrade()
            db.dispose()
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
