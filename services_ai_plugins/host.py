"""The host: configuration, database, keyring and the services built on them, wired once.

The CLI, the web app and each worker process make one :class:`Host` and call its services;
no rule lives in those callers.
"""

from __future__ import annotations

import functools

from services_ai_plugins.config import Config, get_config
from services_ai_plugins.infra.db import Database
from services_ai_plugins.lifecycle.registry import PluginRegistry
from services_ai_plugins.lifecycle.settings import Keyring


class Host:
    """Everything a caller needs, built lazily from one :class:`Config`."""

    def __init__(self, config: Config | None = None, db: Database | None = None) -> None:
        self.config = config or get_config()
        self._db = db

    @functools.cached_property
    def db(self) -> Database:
        return self._db or Database(self.config.database_url)

    @functools.cached_property
    def keyring(self) -> Keyring:
        return Keyring(self.config.secret_keys())

    @functools.cached_property
    def registry(self) -> PluginRegistry:
        return PluginRegistry(self.config, self.db, self.keyring)

    @property
    def uses_default_database(self) -> bool:
        return not self.config.database_url_env

    def ready(self) -> Host:
        """Check the schema is current. The embedded SQLite default is created on first use;
        an explicit ``DATABASE_URL`` must be migrated with ``services-ai db upgrade``."""
        self.db.ensure_schema(auto_upgrade=self.uses_default_database)
        return self

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
