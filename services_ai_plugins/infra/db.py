"""The database: engine, sessions, and migrations (Alembic) behind ``services-ai db upgrade``."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from services_ai_plugins.errors import ConfigError, TransientError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Alembic says, at INFO, which of its plugins it set up: seven lines per worker process for a
# schema check. What it does when it migrates is still logged (WARNING and up).
logging.getLogger("alembic").setLevel(logging.WARNING)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver (the project declares psycopg)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def private_sqlite_file(path: str | None) -> None:
    """Make a SQLite database file (and its folder) before SQLite does, readable by the host's
    user alone: it holds every lead's data (the database) or every queued event (the embedded
    broker), and a plugin's sandbox runs as another user. SQLite gives its -wal and -shm files
    the database file's mode."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)  # made by an older version, or under another umask
    for extra in (path + "-wal", path + "-shm"):
        if os.path.exists(extra):
            os.chmod(extra, 0o600)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (the dashboard) run beside a writing worker; the busy timeout makes
    # concurrent writers wait instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Database:
    """An engine and its session factory for one URL."""

    def __init__(self, url: str, **engine_kw: Any) -> None:
        self.url = normalise_url(url)
        try:
            parsed = make_url(self.url)
        except Exception:
            raise ConfigError(f"DATABASE_URL is not a SQLAlchemy URL: {url!r}") from None
        self.dialect = parsed.get_backend_name()
        kw: dict[str, Any] = {"pool_pre_ping": True, "future": True}
        if self.dialect == "sqlite":
            private_sqlite_file(parsed.database)
            kw["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kw.update(pool_size=5, max_overflow=5, pool_recycle=1800)
        kw.update(engine_kw)
        try:
            self.engine: Engine = create_engine(self.url, **kw)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"no driver for {parsed.drivername}: {exc}") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._migrated = False
        self._lock = threading.Lock()

    @functools.cached_property
    def read_engine(self) -> Engine:
        """For hot read paths (the dashboard): the same database without a ping on every
        checkout (a round trip of its own); :meth:`read` retries once on a dropped connection."""
        if self.dialect == "sqlite":
            return self.engine
        return create_engine(
            self.url,
            pool_pre_ping=False,
            pool_size=5,
            max_overflow=5,
            pool_recycle=1800,
            isolation_level="AUTOCOMMIT",  # one statement, no BEGIN or ROLLBACK round trips
        )

    def read(self, statement: Any) -> list[Any]:
        """Run one read-only statement on :attr:`read_engine`; the rows as tuples."""
        for attempt in (1, 2):
            try:
                with self.read_engine.connect() as conn:
                    return list(conn.execute(statement).all())
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    if isinstance(exc, OperationalError):
                        raise TransientError(f"database unavailable: {exc.orig}") from exc
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def __repr__(self) -> str:
        return f"Database({make_url(self.url).render_as_string(hide_password=True)!r})"

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with self.sessions() as session:
            try:
                with session.begin():
                    yield session
            except OperationalError as exc:
                raise TransientError(f"database unavailable: {exc.orig}") from exc

    # -- migrations -------------------------------------------------------------------------

    def _alembic_config(self) -> Any:
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def upgrade(self, revision: str = "head") -> tuple[str | None, str | None]:
        """Create or migrate the schema; safe to run again. Returns (before, after) revisions."""
        from alembic import command

        before = self.current_revision()
        cfg = self._alembic_config()
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        self._migrated = True
        return before, self.current_revision()

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def ensure_schema(self, auto_upgrade: bool = False) -> None:
        """Refuse to work on a database that is not at the latest migration.

        ``auto_upgrade`` creates it instead (the embedded SQLite default does, so the first
        command on a fresh machine just works).
        """
        if self._migrated:
            return
        with self._lock:
            try:
                current = self.current_revision()
            except OperationalError as exc:
                raise TransientError(f"database unavailable: {exc.orig}") from exc
            head = self.head_revision()
            if current != head:
                if auto_upgrade:
                    self.upgrade()
                elif current is None and not inspect(self.engine).get_table_names():
                    raise ConfigError("the database is empty: run `services-ai db upgrade` first")
                else:
                    raise ConfigError(
                        f"the database is at migration {current}, not {head}: run `services-ai db upgrade`"
                    )
            self._migrated = True

    def dispose(self) -> None:
        self.engine.dispose()
        if "read_engine" in self.__dict__:
            self.read_engine.dispose()
