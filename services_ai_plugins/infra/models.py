"""The registry's tables (SQLAlchemy 2). Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


class Plugin(Base):
    """An installed plugin. ``version`` names its current row in ``plugin_versions``."""

    __tablename__ = "plugins"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    version: Mapped[str] = mapped_column(String(100))
    # "archive" (uploaded ZIP or folder) or "entry_point" (pip-installed distribution).
    source: Mapped[str] = mapped_column(String(20), default="archive")
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when the host took the plugin out of service itself (why, for the admin).
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    versions: Mapped[list[PluginVersion]] = relationship(
        back_populates="plugin", cascade="all, delete-orphan", passive_deletes=True
    )
    permissions: Mapped[list[PluginPermission]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="PluginPermission.name"
    )
    settings: Mapped[list[PluginSetting]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="PluginSetting.name"
    )


class PluginVersion(Base):
    """One uploaded version. The archive itself is kept so any worker host can materialise it."""

    __tablename__ = "plugin_versions"
    __table_args__ = (UniqueConstraint("plugin_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plugin_id: Mapped[str] = mapped_column(ForeignKey("plugins.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(100))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSONType)
    sha256: Mapped[str] = mapped_column(String(64))
    #: A digest of the extracted folder; the local cache is checked against it on every load.
    tree_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    # NULL for entry-point plugins (their code lives in site-packages).
    archive: Mapped[bytes | None] = deferred(mapped_column(LargeBinary, default=None))
    entry_point: Mapped[str | None] = mapped_column(String(300), default=None)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    uploaded_by: Mapped[str | None] = mapped_column(String(200), default=None)

    plugin: Mapped[Plugin] = relationship(back_populates="versions")


class PluginPermission(Base):
    """A permission the current version declares; ``granted`` starts false."""

    __tablename__ = "plugin_permissions"

    plugin_id: Mapped[str] = mapped_column(ForeignKey("plugins.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    granted: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(200), default=None)


class PluginSetting(Base):
    """A stored setting value: JSON for plain settings, a Fernet token for secret ones."""

    __tablename__ = "plugin_settings"

    plugin_id: Mapped[str] = mapped_column(ForeignKey("plugins.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True, default=None)
    ciphertext: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RegistryState(Base):
    """One row whose ``revision`` grows with every registry change; workers poll it."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who changed what in the registry, and when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_plugin_id_at", "plugin_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(200), default=None)
    action: Mapped[str] = mapped_column(String(40))
    plugin_id: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


# -- the event pipeline ---------------------------------------------------------------------


class EventRecord(Base):
    """An event a worker took from the queue. ``status`` is ``done`` once every due plugin
    result is stored; ``failures`` counts the results that are not a success."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_type_occurred_at", "type", "occurred_at"),)

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class HookResult(Base):
    """One row per (event, plugin, hook): what the call came to."""

    __tablename__ = "hook_results"
    __table_args__ = (Index("ix_hook_results_plugin_id_created_at", "plugin_id", "created_at"),)

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    plugin_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hook: Mapped[str] = mapped_column(String(40), primary_key=True)
    plugin_version: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    result: Mapped[Any] = mapped_column(JSONType, nullable=True, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    #: The plugin's own traceback frames of a failure: ``[{file, line, function, text}]``.
    traceback: Mapped[Any] = mapped_column(JSONType, nullable=True, default=None)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """An event that could not be processed: malformed, or out of retries. Replayable."""

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_replayed_at_id", "replayed_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str | None] = mapped_column(String(128), default=None, index=True)
    event_type: Mapped[str | None] = mapped_column(String(40), default=None)
    payload: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    replayed_at: Mapped[datetime | None] = mapped_column(default=None)


class WidgetSnapshot(Base):
    """The current dashboard widget of one plugin, sanitised; the dashboard reads only this."""

    __tablename__ = "widget_snapshots"

    plugin_id: Mapped[str] = mapped_column(ForeignKey("plugins.id", ondelete="CASCADE"), primary_key=True)
    plugin_version: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(200))
    html: Mapped[str] = mapped_column(Text, default="")
    refresh_interval: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    rendered_at: Mapped[datetime | None] = mapped_column(default=None)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    stale_since: Mapped[datetime | None] = mapped_column(default=None)
    next_due_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    etag: Mapped[str] = mapped_column(String(64), default="")


class ExportJob(Base):
    """A data export: which rows each permitted plugin contributed, kept for download."""

    __tablename__ = "exports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    export_type: Mapped[str] = mapped_column(String(40))
    start_date: Mapped[str | None] = mapped_column(String(10), default=None)
    end_date: Mapped[str | None] = mapped_column(String(10), default=None)
    filters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    requested_by: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    plugins: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class ExportRow(Base):
    __tablename__ = "export_rows"
    __table_args__ = (Index("ix_export_rows_export_id_seq", "export_id", "seq"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    export_id: Mapped[str] = mapped_column(ForeignKey("exports.id", ondelete="CASCADE"))
    plugin_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)


class PluginBreaker(Base):
    """A plugin's open circuit breaker, shared by every worker process (see ``breaker.py``)."""

    __tablename__ = "plugin_breakers"

    plugin_id: Mapped[str] = mapped_column(ForeignKey("plugins.id", ondelete="CASCADE"), primary_key=True)
    open_until: Mapped[datetime] = mapped_column()
    cooldown: Mapped[float] = mapped_column(default=0.0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PluginProblem(Base):
    """Something a worker noticed about a plugin that ops must see (``status`` lists them):
    ``kind`` ``setup`` (it cannot be called there: its secrets do not decrypt, its code is missing), ``crash`` (its sandbox or the
    process running it died; ``count`` in a row)."""

    __tablename__ = "plugin_problems"

    plugin_id: Mapped[str] = mapped_column(ForeignKey("plugins.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)


# -- who may use the web app and the API ------------------------------------------------------


class User(Base):
    """A person who logs in to the web pages. ``session_version`` moves when the password
    changes or the user is disabled: every session issued before ends."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiToken(Base):
    """A bearer token for programs. Only its SHA-256 is kept (tokens are 256 random bits, so a
    slow hash buys nothing); ``prefix`` lets a person tell tokens apart."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class LoginAttempt(Base):
    """A failed login, kept for the rate limit (a user name, or a client address, that fails
    too often in a window is refused for a while)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_name_at", "name", "at"),
        Index("ix_login_failures_client_at", "client", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
