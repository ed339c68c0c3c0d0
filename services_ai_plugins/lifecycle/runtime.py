"""The plugins of one process, kept in step with the registry.

A worker process keeps one :class:`PluginRuntime`. It checks the registry revision at most
every ``registry_poll_seconds`` (one indexed single-row read) and, when it moved, reads the
enabled plugins again: their grants, their typed settings (secrets decrypted for each alone) and
their code, checked in the local cache. Plugin code itself is loaded by the executor, when the
plugin is first called. A plugin that cannot be called as it stands (its secrets do not decrypt
here, its code is missing) stays a target with its ``problem``: its calls are stored as failed
with that reason, the reason is logged once and recorded for ``status``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from schemas.manifest import parse_manifest
from services_ai_plugins.calling.caller import Target
from services_ai_plugins.calling.executor import Executor
from services_ai_plugins.calling.inline import secret_values
from services_ai_plugins.calling.permissions import can_call
from services_ai_plugins.errors import ServicesAIError, one_line
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import Plugin, PluginVersion, RegistryState
from services_ai_plugins.lifecycle.codestore import CodeStore
from services_ai_plugins.lifecycle.settings import Keyring, StoredSetting, typed_values

__all__ = ["PluginRuntime", "Snapshot", "read_revision", "take_snapshot"]

log = logging.getLogger(__name__)

#: ``(plugin_id, reason)``: a problem this process found with a plugin.
ProblemSink = Callable[[str, str], None]


@dataclass(frozen=True)
class Snapshot:
    revision: int
    #: Enabled plugins, by id.
    plugins: Mapping[str, Target]


def read_revision(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(RegistryState.revision).where(RegistryState.id == 1)) or 0)


def take_snapshot(db: Database, keyring: Keyring, codes: CodeStore) -> Snapshot:
    """The enabled plugins, their grants, typed settings and checked code, in one transaction."""
    with db.session() as s:
        revision = int(s.scalar(select(RegistryState.revision).where(RegistryState.id == 1)) or 0)
        rows = s.scalars(
            select(Plugin)
            .where(Plugin.enabled.is_(True))
            .options(selectinload(Plugin.permissions), selectinload(Plugin.settings))
            .order_by(Plugin.id)
        ).all()
        versions = {
            (v.plugin_id, v.version): v
            for v in s.scalars(select(PluginVersion).where(PluginVersion.plugin_id.in_([p.id for p in rows])))
        }
        plugins: dict[str, Target] = {}
        for p in rows:
            version = versions.get((p.id, p.version))
            if version is None:
                log.error("plugin %s: its current version %s is missing", p.id, p.version)
                continue
            manifest = parse_manifest(version.manifest, "stored manifest")
            granted = frozenset(perm.name for perm in p.permissions if perm.granted)
            problem = None
            settings: dict[str, object] = {}
            code = None
            try:
                stored = {r.name: StoredSetting(r.value, r.ciphertext) for r in p.settings}
                settings = typed_values(p.id, manifest, stored, keyring)
                code = codes.code(s, version, manifest)
            except ServicesAIError as exc:
                problem = str(exc)
            except OSError as exc:
                problem = f"its code could not be read from the local cache: {one_line(exc)}"
            secrets = secret_values(code, settings) if code is not None else ()
            plugins[p.id] = Target(
                plugin_id=p.id,
                version=p.version,
                manifest=manifest,
                granted=granted,
                enabled=True,
                settings=settings,
                secrets=secrets,
                code=code,
                problem=problem,
            )
        return Snapshot(revision, plugins)


class PluginRuntime:
    """The enabled plugins of this process; ``refresh()`` keeps them in step with the registry."""

    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        codes: CodeStore,
        executor: Executor,
        poll_seconds: float,
        on_problem: ProblemSink | None = None,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.codes = codes
        self.executor = executor
        self.poll_seconds = poll_seconds
        self.on_problem = on_problem
        self.snapshot = Snapshot(-1, {})
        self._targets: dict[tuple[str, str | None], list[Target]] = {}
        self._checked_at: float | None = None

    @property
    def revision(self) -> int:
        return self.snapshot.revision

    @property
    def plugins(self) -> Mapping[str, Target]:
        return self.snapshot.plugins

    def refresh(self, force: bool = False) -> bool:
        """Catch up with the registry if its revision moved; True if it did.

        Cheap to call on every batch: it reads the revision at most once per poll interval.
        """
        now = time.monotonic()
        if not force and self._checked_at is not None and now - self._checked_at < self.poll_seconds:
            return False
        self._checked_at = now
        if not force and read_revision(self.db) == self.snapshot.revision:
            return False
        self._apply(take_snapshot(self.db, self.keyring, self.codes))
        return True

    def _apply(self, snap: Snapshot) -> None:
        before = self.snapshot.plugins
        for plugin_id, was in before.items():
            now = snap.plugins.get(plugin_id)
            # New settings or grants reach the loaded code (or running sandbox) with the next
            # call; other code, or a plugin gone, is dropped now.
            if now is None or now.code != was.code:
                self.executor.forget(plugin_id)
        for plugin_id, target in snap.plugins.items():
            earlier = before.get(plugin_id)
            if target.problem and (earlier is None or earlier.problem != target.problem):
                log.error("plugin %s cannot be called here: %s", plugin_id, target.problem)
                if self.on_problem is not None:
                    try:
                        self.on_problem(plugin_id, target.problem)
                    except Exception:
                        log.warning("could not record the problem of plugin %s", plugin_id, exc_info=True)
        self.snapshot = snap
        self._targets.clear()

    def targets(self, hook: str, export_type: str | None = None) -> list[Target]:
        """Enabled plugins whose manifest declares ``hook`` and that pass ``can_call``: the only
        plugins a hook is ever dispatched to. Cached until the registry changes."""
        key = (hook, export_type)
        cached = self._targets.get(key)
        if cached is None:
            cached = self._targets[key] = [
                t
                for _, t in sorted(self.snapshot.plugins.items())
                if hook in t.manifest.hooks and can_call(t, hook, export_type)
            ]
        return cached

    def target(self, plugin_id: str) -> Target | None:
        return self.snapshot.plugins.get(plugin_id)

    def close(self) -> None:
        self.executor.close()
        self._targets.clear()
