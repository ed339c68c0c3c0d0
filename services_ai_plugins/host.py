"""The host: configuration, database, keyring and every service built on them, wired once.

The CLI, the web app and each worker process make one :class:`Host` and call its services; no
rule lives in those callers. Services are built on first use, so a process that only reads
(the dashboard) never builds an executor, and none loads plugin code of its own accord.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from services_ai_plugins.calling.caller import HookCaller
from services_ai_plugins.calling.executor import Executor
from services_ai_plugins.calling.inline import InlineExecutor
from services_ai_plugins.calling.marker import RunningMarker, dead_markers
from services_ai_plugins.config import Config, get_config
from services_ai_plugins.features.accounts import AccountService
from services_ai_plugins.features.activity import ActivityService
from services_ai_plugins.features.audit import AuditService
from services_ai_plugins.features.exports import ExportService
from services_ai_plugins.features.status import StatusService
from services_ai_plugins.features.widgets import WidgetService
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.tasks import CeleryTaskQueue, InlineTaskQueue, TaskQueue
from services_ai_plugins.lifecycle.archive import ArchiveLimits
from services_ai_plugins.lifecycle.codestore import CodeStore
from services_ai_plugins.lifecycle.registry import PluginRegistry
from services_ai_plugins.lifecycle.runtime import PluginRuntime
from services_ai_plugins.lifecycle.settings import Keyring
from services_ai_plugins.pipeline.backfill import Backfill
from services_ai_plugins.pipeline.events import EventService
from services_ai_plugins.publisher import Publisher

if TYPE_CHECKING:
    from services_ai_plugins.pipeline.processor import EventProcessor

__all__ = ["Host"]


class Host:
    """Everything a caller needs, built lazily from one :class:`Config`."""

    def __init__(
        self,
        config: Config | None = None,
        db: Database | None = None,
        executor: Executor | None = None,
        tasks: str = "celery",
        sandboxed: bool = False,
    ) -> None:
        """``tasks``: ``celery`` sends queued work to the workers; ``inline`` runs it at once,
        in this process (tests, one-process tools). ``sandboxed``: plugin code runs in sandbox
        processes whatever ``plugin_isolation`` says (the web app never loads it)."""
        self.config = config or get_config()
        self._db = db
        self._executor = executor
        self._tasks = tasks
        self._sandboxed = sandboxed

    # -- foundations ------------------------------------------------------------------------

    @functools.cached_property
    def db(self) -> Database:
        return self._db or Database(self.config.database_url)

    @functools.cached_property
    def keyring(self) -> Keyring:
        return Keyring(self.config.secret_keys())

    @functools.cached_property
    def codes(self) -> CodeStore:
        return CodeStore(self.config, ArchiveLimits(max_archive_bytes=self.config.max_archive_bytes))

    @functools.cached_property
    def executor(self) -> Executor:
        """Where plugin code runs (built on first use: readers never need one): a sandbox
        process per plugin (``process``, the default), or this process (``inline``)."""
        if self._executor is not None:
            return self._executor
        config = self.config
        if config.plugin_isolation == "inline" and not self._sandboxed:
            return InlineExecutor(config.plugin_import_time_limit, RunningMarker(config.data_dir / "running"))
        from services_ai_plugins.calling.sandbox.process import ProcessExecutor
        from services_ai_plugins.calling.sandbox.protections import Limits

        limits = Limits(
            memory_mb=config.sandbox_memory_mb,
            cpu_seconds=config.sandbox_cpu_seconds,
            max_files=config.sandbox_max_files,
            max_processes=config.sandbox_max_processes,
        )
        return ProcessExecutor(
            config.data_dir / "sandboxes",
            limits,
            config.plugin_import_time_limit,
            on_crash=lambda plugin_id, reason: self.registry.record_crash(
                plugin_id, reason, config.quarantine_threshold
            ),
            on_recover=lambda plugin_id: self.registry.clear_problem(plugin_id, "crash"),
        )

    @functools.cached_property
    def caller(self) -> HookCaller:
        return HookCaller(self.executor, self.config)

    # -- services ---------------------------------------------------------------------------

    @functools.cached_property
    def registry(self) -> PluginRegistry:
        return PluginRegistry(self.config, self.db, self.keyring, self.codes, self.caller)

    @functools.cached_property
    def runtime(self) -> PluginRuntime:
        """This process's view of the enabled plugins (workers; ``--now`` commands)."""
        return PluginRuntime(
            self.db,
            self.keyring,
            self.codes,
            self.executor,
            self.config.registry_poll_seconds,
            on_problem=lambda plugin_id, reason: self.registry.record_problem(plugin_id, "setup", reason),
        )

    @functools.cached_property
    def events(self) -> EventService:
        return EventService(self.db)

    @functools.cached_property
    def widgets(self) -> WidgetService:
        return WidgetService(self.config, self.db, lambda: self.runtime, lambda: self.caller)

    @functools.cached_property
    def exports(self) -> ExportService:
        return ExportService(self.db, lambda: self.runtime, lambda: self.caller)

    @functools.cached_property
    def activity(self) -> ActivityService:
        return ActivityService(self.db, self.events)

    @functools.cached_property
    def audit(self) -> AuditService:
        return AuditService(self.db)

    @functools.cached_property
    def accounts(self) -> AccountService:
        return AccountService(self.config, self.db)

    @functools.cached_property
    def status(self) -> StatusService:
        return StatusService(self.config, self.db, self.events, self.widgets, self._protections)

    def count_killed_processes(self) -> list[str]:
        """Count against its plugin the death of each process of this host that was killed
        while running one (a worker's pool process killed at its hard time limit, say); the
        plugins charged."""
        charged = dead_markers(self.config.data_dir / "running")
        for plugin_id in charged:
            self.registry.record_crash(
                plugin_id,
                "the worker process running it was killed (a hard time limit, or out of memory)",
                self.config.quarantine_threshold,
            )
        return charged

    def _protections(self) -> dict[str, Any]:
        """How plugin code is isolated in the workers (without starting an executor just to
        ask); a sandboxed host (the web app) reports the configured mode, which workers use."""
        if not self._sandboxed and (self._executor is not None or "executor" in self.__dict__):
            return self.executor.protections()
        if self.config.plugin_isolation == "inline":
            return InlineExecutor().protections()
        from services_ai_plugins.calling.sandbox.protections import probe

        return probe()

    @functools.cached_property
    def backfill(self) -> Backfill:
        return Backfill(self.db, self.runtime, self.caller)

    @functools.cached_property
    def publisher(self) -> Publisher:
        return Publisher(self.config)

    @functools.cached_property
    def tasks(self) -> TaskQueue:
        """Where widget refreshes, exports and replays are queued (they run plugin code)."""
        if self._tasks == "inline":
            return InlineTaskQueue(self.widgets.refresh, self.exports.run, self.backfill.run)
        return CeleryTaskQueue(self.config)

    @functools.cached_property
    def processor(self) -> EventProcessor:
        """The batch processor of a worker process."""
        from services_ai_plugins.pipeline.processor import EventProcessor

        return EventProcessor(self.config, self.db, self.runtime, self.caller)

    @property
    def uses_default_database(self) -> bool:
        return not self.config.database_url_env

    def ready(self) -> Host:
        """Check the schema is current. The embedded SQLite default is created on first use;
        an explicit ``DATABASE_URL`` must be migrated with ``services-ai db upgrade``."""
        self.db.ensure_schema(auto_upgrade=self.uses_default_database)
        return self

    def close(self) -> None:
        if "processor" in self.__dict__:
            self.processor.close()
        if "runtime" in self.__dict__:
            self.runtime.close()
        if "executor" in self.__dict__:
            self.executor.close()
        if "db" in self.__dict__:
            self.db.dispose()
