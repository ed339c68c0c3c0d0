"""Configuration from the environment, read once and typed. Secrets are masked in ``repr``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Config", "get_config", "reset_config"]


class Config(BaseSettings):
    """Every setting, its environment variable and default (also tabled in the README)."""

    model_config = SettingsConfigDict(env_prefix="SERVICES_AI_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".services_ai"),
        description="SERVICES_AI_DATA_DIR: local data (SQLite file, extracted-plugin cache).",
    )
    database_url_env: str | None = Field(
        default=None,
        validation_alias="DATABASE_URL",
        description="DATABASE_URL: SQLAlchemy URL; default a SQLite file in the data folder.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias="REDIS_URL",
        description="REDIS_URL: the Redis broker; with neither it nor BROKER_URL, the embedded one.",
    )
    broker_url_env: str | None = Field(
        default=None,
        validation_alias="BROKER_URL",
        description="BROKER_URL: any kombu URL (e.g. amqp://); overrides REDIS_URL.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="SERVICES_AI_SECRET_KEY: Fernet key(s), comma-separated, newest first.",
    )
    plugin_isolation: Literal["process", "inline"] = Field(
        default="process",
        description="SERVICES_AI_PLUGIN_ISOLATION: process (each plugin in a sandbox) or inline.",
    )
    sandbox_memory_mb: int = Field(default=512, ge=64, le=65536, description="Memory (MB) of one sandbox.")
    sandbox_cpu_seconds: int = Field(
        default=600, ge=10, description="CPU seconds one sandbox may use in all."
    )
    sandbox_max_files: int = Field(
        default=64, ge=16, le=65536, description="Files one sandbox may hold open."
    )
    sandbox_max_processes: int = Field(
        default=0, ge=0, le=4096, description="New processes or threads a sandbox may start (0: none)."
    )
    quarantine_threshold: int = Field(
        default=5, ge=1, le=1000, description="Sandbox deaths in a row after which a plugin is disabled."
    )
    plugin_time_limit: float = Field(
        default=5.0, gt=0, le=3600, description="Seconds one plugin call may take."
    )
    plugin_import_time_limit: float = Field(
        default=10.0, gt=0, le=600, description="Seconds importing one plugin's code may take."
    )
    result_max_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest JSON result stored for one call."
    )
    registry_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often a worker checks the registry revision."
    )
    publish_retries: int = Field(
        default=4, ge=0, le=50, description="Tries after the first before publish() gives up."
    )
    batch_size: int = Field(default=50, ge=1, le=1000, description="Events a worker processes per batch.")
    batch_interval: float = Field(
        default=0.005,
        gt=0,
        le=5,
        description=(
            "Seconds a batch waits to fill (solo pool); with prefork, how long what arrives while a"
            " batch runs gathers before a free pool process takes it."
        ),
    )
    task_time_limit: int = Field(
        default=1800, ge=10, description="Hard limit (s) on one task; the soft limit is 30 s less."
    )
    visibility_timeout: int = Field(
        default=7200, ge=1, description="Seconds before an unacknowledged Redis message returns."
    )
    redis_atomic_fetch: bool = Field(
        default=True,
        description="Take Redis messages and record them as unacknowledged in one step (False: kombu's way).",
    )
    redis_fetch_pause: float = Field(
        default=0.003,
        ge=0,
        le=1,
        description="Seconds a Redis consumer lets a trickle of messages gather before its next fetch (0: fetch as each arrives).",
    )
    event_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Tries of an event on transient errors before the DLQ."
    )
    widget_tick_seconds: float = Field(
        default=5.0, gt=0, description="How often beat looks for widgets due a refresh."
    )
    widget_default_refresh: int = Field(
        default=300, ge=5, description="Widget refresh interval when a plugin gives none."
    )
    breaker_threshold: int = Field(
        default=3, ge=1, description="Consecutive timeouts after which a plugin is not called."
    )
    breaker_cooldown: float = Field(
        default=30.0, gt=0, description="Seconds before a tripped plugin is tried again (doubles)."
    )
    max_archive_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, description="Largest plugin ZIP accepted."
    )

    web_host: str = Field(default="127.0.0.1", description="Address `services-ai web` listens on.")
    web_port: int = Field(default=8000, ge=1, le=65535, description="Port `services-ai web` listens on.")
    web_workers: int = Field(default=1, ge=1, le=64, description="Web server processes.")
    web_session_key: SecretStr | None = Field(
        default=None,
        description="Signs session cookies; set the same on every web host (default: a key file in the data folder).",
    )
    web_session_hours: float = Field(default=12.0, gt=0, le=24 * 30, description="How long a login lasts.")
    web_secure_cookies: bool = Field(
        default=True, description="Session cookies only over HTTPS (browsers exempt localhost)."
    )
    web_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description=(
            "How long a web process reuses a token check and the dashboard's widget-list tag "
            "(a revoked token stops, a new snapshot shows, at most this much later; 0: never)."
        ),
    )
    web_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body, uploads aside (they get max_archive_bytes).",
    )
    login_max_failures: int = Field(
        default=5, ge=1, le=1000, description="Failed logins of one name (x4 of one address) before a pause."
    )
    login_window_seconds: int = Field(
        default=900, ge=10, description="The window, and the pause, of that limit."
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("web_session_key", mode="before")
    @classmethod
    def _session_key(cls, v: object) -> object:
        """Empty means unset (compose passes ``${VAR:-}``); a short key is guessable."""
        if isinstance(v, SecretStr):
            v = v.get_secret_value()
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        if isinstance(v, str) and len(v.strip()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `services-ai secret-key`)")
        return v

    @property
    def database_url(self) -> str:
        """``DATABASE_URL``, or the SQLite file in the data folder."""
        if self.database_url_env:
            return self.database_url_env
        return f"sqlite:///{self.data_dir / 'services_ai.db'}"

    @property
    def broker_url(self) -> str:
        """``BROKER_URL``, else ``REDIS_URL``, else the embedded broker in the data folder (a
        SQLite file): never a server nobody named."""
        return self.broker_url_env or self.redis_url or f"sqlite:///{self.data_dir / 'broker.db'}"

    @property
    def embedded_broker(self) -> bool:
        return not (self.broker_url_env or self.redis_url)

    @property
    def cache_dir(self) -> Path:
        """Extracted plugin archives, one folder per sha256."""
        return self.data_dir / "plugins"

    def secret_keys(self) -> list[str]:
        if self.secret_key is None:
            return []
        return [k.strip() for k in self.secret_key.get_secret_value().split(",") if k.strip()]


@functools.lru_cache(maxsize=1)
def get_config() -> Config:
    """The process-wide configuration (read from the environment on first use)."""
    return Config()


def reset_config() -> None:
    """Forget the cached configuration (tests change the environment)."""
    get_config.cache_clear()
