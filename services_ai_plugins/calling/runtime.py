"""The plugins of one process, loaded, registered and kept in step with the registry.

A worker process keeps one :class:`PluginRuntime`. It checks the registry revision at most
every ``registry_poll_seconds`` (one indexed single-row read) and, when it moved, reconciles:
plugins disabled or removed are unloaded, new or upgraded ones loaded (from the local cache, or
materialised from the database on a host that has never seen them), grants and settings
refreshed. One plugin failing to load never stops the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from services_ai_plugins.calling.context import build_context, plugin_logger
from services_ai_plugins.calling.loader import HookCall, LoadedPlugin, PluginLoader
from services_ai_plugins.errors import ServicesAIError
from services_ai_plugins.infra.models import PluginVersion
from services_ai_plugins.lifecycle.permissions import can_call
from services_ai_plugins.lifecycle.registry import (
    ActivePlugin,
    PluginRegistry,
    RegistrySnapshot,
    _entry_point_object,
    take_snapshot,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """A plugin to call for a hook: its registry state and its implementation."""

    plugin: ActivePlugin
    call: HookCall
    logger: logging.Logger
    #: The context entries that are the same on every call (built once per registry revision).
    base_context: Mapping[str, Any]


class PluginRuntime:
    """Loaded plugins for one process; ``refresh()`` keeps them in step with the registry."""

    def __init__(self, registry: PluginRegistry, poll_seconds: float | None = None) -> None:
        self.registry = registry
        self.poll_seconds = registry.config.registry_poll_seconds if poll_seconds is None else poll_seconds
        self.loader = PluginLoader(import_time_limit=registry.config.plugin_import_time_limit)
        self.snapshot = RegistrySnapshot(-1, {}, {})
        self.failures: dict[str, str] = {}
        self._loaded_sha: dict[str, str] = {}
        self._targets: dict[tuple[str, str | None], list[Target]] = {}
        self._loggers: dict[str, logging.Logger] = {}
        self._checked_at: float | None = None

    @property
    def revision(self) -> int:
        return self.snapshot.revision

    @property
    def plugins(self) -> Mapping[str, ActivePlugin]:
        """Enabled plugins whose code is loaded here."""
        return {k: v for k, v in self.snapshot.plugins.items() if k in self.loader.loaded}

    def refresh(self, force: bool = False) -> bool:
        """Catch up with the registry if its revision moved; True if anything changed.

        Cheap to call on every batch: it reads the revision at most once per poll interval.
        """
        now = time.monotonic()
        if not force and self._checked_at is not None and now - self._checked_at < self.poll_seconds:
            return False
        self._checked_at = now
        if not force and self.registry.revision() == self.snapshot.revision:
            return False
        self._apply(take_snapshot(self.registry))
        return True

    def _apply(self, snap: RegistrySnapshot) -> None:
        wanted = snap.plugins
        for plugin_id in list(self.loader.loaded):
            active = wanted.get(plugin_id)
            if active is None or self._loaded_sha.get(plugin_id) != active.sha256:
                self.loader.unload(plugin_id)
                self._loaded_sha.pop(plugin_id, None)
        self.failures = dict(snap.problems)
        for plugin_id, active in wanted.items():
            if plugin_id in self.loader.loaded:
                continue
            try:
                self._load(active)
            except ServicesAIError as exc:
                self.failures[plugin_id] = str(exc)
                log.error("plugin %s not loaded: %s", plugin_id, exc)
            except Exception as exc:  # never let one plugin stop the others
                self.failures[plugin_id] = f"{type(exc).__name__}: {exc}"
                log.exception("plugin %s not loaded", plugin_id)
        self.snapshot = snap
        self._targets.clear()
        self._loggers = {pid: plugin_logger(pid, active.secrets) for pid, active in wanted.items()}

    def _load(self, active: ActivePlugin) -> LoadedPlugin:
        if active.source == "entry_point":
            loaded = self.loader.load_object(active.manifest, _entry_point_object(active.entry_point or ""))
        else:
            root = self.registry.config.cache_dir / active.sha256
            if not (root / "manifest.json").is_file():
                with self.registry.db.session() as s:
                    version = s.scalars(
                        select(PluginVersion).where(
                            PluginVersion.plugin_id == active.plugin_id,
                            PluginVersion.version == active.version,
                        )
                    ).one()
                    root = self.registry.materialise(s, version)
            loaded = self.loader.load_folder(active.manifest, root, tag=active.sha256)
        self._loaded_sha[active.plugin_id] = active.sha256
        return loaded

    def targets(self, hook: str, export_type: str | None = None) -> list[Target]:
        """Enabled, loaded plugins that implement ``hook`` and pass ``can_call`` — the only
        plugins a hook is ever dispatched to. Cached until the registry changes."""
        key = (hook, export_type)
        cached = self._targets.get(key)
        if cached is not None:
            return cached
        out = []
        for plugin_id, loaded in sorted(self.loader.loaded.items()):
            active = self.snapshot.plugins.get(plugin_id)
            call = loaded.hooks.get(hook)
            if active is None or call is None or not can_call(active, hook, export_type):
                continue
            logger = self._loggers[plugin_id]
            base = build_context(active.manifest, active.settings, logger)
            out.append(Target(active, call, logger, base))
        self._targets[key] = out
        return out

    @staticmethod
    def context(target: Target, **extra: Any) -> dict[str, Any]:
        """A fresh context for one call: a plugin that changes it changes nothing else."""
        base = target.base_context
        context = {**base, "settings": dict(base["settings"]), "plugin": dict(base["plugin"])}
        context.update(extra)
        return context

    def close(self) -> None:
        self.loader.unload_all()
        self._loaded_sha.clear()
        self._targets.clear()
