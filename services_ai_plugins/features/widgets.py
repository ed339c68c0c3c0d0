"""Dashboard widgets: refreshed on each plugin's own interval, stored sanitised, read cheaply.

The dashboard reads :meth:`WidgetService.snapshots` - one indexed query, no plugin code. Beat
runs a tick every few seconds; it refreshes the widgets that are due. A failing refresh keeps
the last good snapshot and records the error and since when it is stale.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import DateTime, and_, func, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from typing_extensions import TypedDict

from services_ai_plugins.calling.caller import HookCaller, Outcome, Target
from services_ai_plugins.calling.executor import SUCCESS
from services_ai_plugins.calling.permissions import missing_for
from services_ai_plugins.calling.requests import widget_call
from services_ai_plugins.calling.sanitize import plain_text
from services_ai_plugins.config import Config
from services_ai_plugins.errors import NotFoundError, PluginNotFoundError, PluginStateError
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import (
    HookResult,
    Plugin,
    PluginPermission,
    RegistryState,
    WidgetSnapshot,
    utcnow,
)
from services_ai_plugins.lifecycle.runtime import PluginRuntime

__all__ = ["HOOK", "WidgetService", "WidgetView"]


class WidgetView(TypedDict):
    """A widget snapshot as the dashboard shows it: HTML sanitised, title plain text."""

    plugin_id: str
    plugin_name: str
    plugin_version: str
    title: str
    html: str
    refresh_interval: int
    status: str
    error: str | None
    rendered_at: str | None
    attempted_at: str | None
    stale_since: str | None
    next_due_at: str | None
    duration_ms: float
    etag: str
    ok: bool


HOOK = "dashboard_widget"
RETRY_AFTER_FAILURE = 60
RECENT_RESULTS = 50


def _etag(title: str, html: str) -> str:
    return hashlib.sha256(f"{title}\x00{html}".encode()).hexdigest()[:32]


_T = WidgetSnapshot.__table__.c
# The read path's columns, timestamps as the driver returns them (no per-row type processing).
_READ_COLUMNS = (
    _T.plugin_id, Plugin.name, _T.plugin_version, _T.title, _T.html, _T.refresh_interval,
    _T.status, _T.error,
    *(type_coerce(_T[c], DateTime(timezone=True)).label(c)
      for c in ("rendered_at", "attempted_at", "stale_since", "next_due_at")),
    _T.duration_ms, _T.etag,
)  # fmt: skip
_READ_KEYS = (
    "plugin_id", "plugin_name", "plugin_version", "title", "html", "refresh_interval", "status",
    "error", "rendered_at", "attempted_at", "stale_since", "next_due_at", "duration_ms", "etag",
    "ok",
)  # fmt: skip


class WidgetService:
    """The dashboard's widgets: read from the database, rendered by workers on schedule."""

    def __init__(
        self,
        config: Config,
        db: Database,
        runtime: Callable[[], PluginRuntime] | None = None,
        caller: Callable[[], HookCaller] | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self._runtime = runtime
        self._caller = caller
        self._insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert

    def _plugins(self) -> tuple[PluginRuntime, HookCaller]:
        if self._runtime is None or self._caller is None:
            raise PluginStateError("*", "widgets are rendered by workers; this process only reads them")
        runtime = self._runtime()
        runtime.refresh()
        return runtime, self._caller()

    # -- the read path (dashboard) --------------------------------------------------------

    def snapshots(self) -> list[WidgetView]:
        """Current snapshots of enabled plugins holding ``dashboard_widget``; no plugin runs.

        One query over three primary keys, read as plain rows (no ORM objects, no session):
        the dashboard polls this.
        """
        return [
            cast(WidgetView, dict(zip(_READ_KEYS, _row_values(r), strict=True)))
            for r in self.db.read(self._read)
        ]

    _shown = and_(
        Plugin.id == WidgetSnapshot.plugin_id,
        Plugin.enabled.is_(True),
    )
    _granted = and_(
        PluginPermission.plugin_id == WidgetSnapshot.plugin_id,
        PluginPermission.name == HOOK,
        PluginPermission.granted.is_(True),
    )
    _read = (
        select(*_READ_COLUMNS)
        .join(Plugin, _shown)
        .join(PluginPermission, _granted)
        .order_by(WidgetSnapshot.plugin_id)
    )

    def list_tag(self) -> str:
        """A tag that moves whenever :meth:`snapshots` would answer differently, read in one
        small aggregate query (the dashboard's 304 path): every snapshot write sets its
        ``attempted_at`` (summed, so a worker with a slow clock still moves it), and every change
        of which plugins show a widget (enabled, granted, renamed, removed) moves the registry
        revision."""
        count, moments, revision = self.db.read(self._tag)[0]
        return hashlib.sha256(f"{count}:{moments}:{revision}".encode()).hexdigest()[:32]

    def snapshot(self, plugin_id: str) -> WidgetView:
        """One plugin's current snapshot (as in :meth:`snapshots`); ``NotFoundError`` when the
        dashboard would not show it."""
        rows = self.db.read(self._read.where(WidgetSnapshot.plugin_id == plugin_id))
        if not rows:
            raise NotFoundError("widget", plugin_id, "not found (not rendered yet, or not shown)")
        return cast(WidgetView, dict(zip(_READ_KEYS, _row_values(rows[0]), strict=True)))

    @functools.cached_property
    def _tag(self) -> Any:
        moment: Any = (
            func.extract("epoch", WidgetSnapshot.attempted_at)
            if self.db.dialect == "postgresql"
            else func.julianday(WidgetSnapshot.attempted_at)
        )
        revision = select(RegistryState.revision).where(RegistryState.id == 1).scalar_subquery()
        return select(func.count(), func.sum(moment), revision)

    def counts(self) -> dict[str, Any]:
        """The widgets the dashboard shows, by status, and how many of them are stale."""
        stmt = (
            select(WidgetSnapshot.status, func.count(), func.count(WidgetSnapshot.stale_since))
            .join(Plugin, self._shown)
            .join(PluginPermission, self._granted)
            .group_by(WidgetSnapshot.status)
        )
        rows = self.db.read(stmt)
        return {"by_status": {r[0]: int(r[1]) for r in rows}, "stale": sum(int(r[2]) for r in rows)}

    # -- scheduling -------------------------------------------------------------------------

    def due(self, now: datetime | None = None) -> list[str]:
        """Plugins whose widget should be rendered now (never rendered, or past their time)."""
        now = now or utcnow()
        runtime, _ = self._plugins()
        candidates = [t.plugin_id for t in runtime.targets(HOOK)]
        if not candidates:
            return []
        with self.db.session() as s:
            later = set(
                s.scalars(
                    select(WidgetSnapshot.plugin_id).where(
                        WidgetSnapshot.plugin_id.in_(candidates), WidgetSnapshot.next_due_at > now
                    )
                )
            )
        return [p for p in candidates if p not in later]

    # -- rendering --------------------------------------------------------------------------

    def refresh(self, plugin_id: str, actor: str | None = None) -> WidgetView:
        """Render one plugin's widget now and store it; the snapshot as stored. A failed
        render keeps the last good snapshot, with the error. Raises ``PluginStateError`` with
        the reason when the plugin may not have a widget at all."""
        runtime, caller = self._plugins()
        target = next((t for t in runtime.targets(HOOK) if t.plugin_id == plugin_id), None)
        if target is None:
            raise PluginStateError(plugin_id, self._why_not(runtime, plugin_id))
        now = utcnow()
        outcome = caller.call(HOOK, target, [widget_call(plugin_id, self._recent(plugin_id), actor)])[0]
        return self._store(target, outcome, now)

    def refresh_all(self, actor: str | None = None) -> list[WidgetView]:
        """Render every widget now (each plugin that may have one)."""
        runtime, _ = self._plugins()
        return [self.refresh(t.plugin_id, actor) for t in runtime.targets(HOOK)]

    def _why_not(self, runtime: PluginRuntime, plugin_id: str) -> str:
        with self.db.session() as s:
            plugin = s.get(Plugin, plugin_id)
            if plugin is None:
                raise PluginNotFoundError(plugin_id)
            if not plugin.enabled:
                return "is disabled, so it has no widget to render"
        target = runtime.target(plugin_id)
        if target is None:
            return "is not enabled yet on this worker; try again in a moment"
        if HOOK not in target.manifest.hooks:
            return "does not implement dashboard_widget"
        missing = missing_for(target.granted, HOOK)
        return f"is not granted {', '.join(missing)}" if missing else "may not render a widget"

    def _recent(self, plugin_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [
                {
                    "hook": r.hook,
                    "status": r.status,
                    "result": r.result,
                    "created_at": r.created_at.isoformat(),
                }
                for r in s.scalars(
                    select(HookResult)
                    .where(HookResult.plugin_id == plugin_id)
                    .order_by(HookResult.created_at.desc())
                    .limit(RECENT_RESULTS)
                )
            ]

    def _store(self, target: Target, outcome: Outcome, now: datetime) -> WidgetView:
        plugin_id = target.plugin_id
        default_interval = self.config.widget_default_refresh
        with self.db.session() as s:
            current = s.get(WidgetSnapshot, plugin_id)
            if outcome.ok:
                rendered = outcome.result
                values = {
                    "plugin_version": target.version,
                    "title": rendered["title"],
                    "html": rendered["html"],
                    "refresh_interval": rendered["refresh_interval"],
                    "status": "ok",
                    "error": None,
                    "rendered_at": now,
                    "attempted_at": now,
                    "stale_since": None,
                    "next_due_at": now + timedelta(seconds=rendered["refresh_interval"]),
                    "duration_ms": outcome.duration_ms,
                    "etag": _etag(rendered["title"], rendered["html"]),
                }
            else:
                interval = current.refresh_interval if current else default_interval
                values = {
                    "plugin_version": target.version,
                    "title": current.title if current else plain_text(target.name),
                    "html": current.html if current else "",
                    "refresh_interval": interval,
                    "status": outcome.status,
                    "error": outcome.error,
                    "rendered_at": current.rendered_at if current else None,
                    "attempted_at": now,
                    "stale_since": (current.stale_since if current and current.stale_since else now),
                    "next_due_at": now + timedelta(seconds=min(interval, RETRY_AFTER_FAILURE)),
                    "duration_ms": outcome.duration_ms,
                    "etag": current.etag if current else "",
                }
            ins = self._insert(WidgetSnapshot).values(plugin_id=plugin_id, **values)
            s.execute(ins.on_conflict_do_update(index_elements=[WidgetSnapshot.plugin_id], set_=values))
            s.flush()
            snap = s.get(WidgetSnapshot, plugin_id)
            s.refresh(snap)
            assert snap is not None
            return _view(snap, target.name)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _row_values(r: Any) -> list[Any]:
    (plugin_id, name, version, title, html, interval, status, error,
     rendered, attempted, stale, due, duration, etag) = r  # fmt: skip
    return [plugin_id, name, version, title, html, interval, status, error,
            _iso(rendered), _iso(attempted), _iso(stale), _iso(due), duration, etag, status == "ok"]  # fmt: skip


def _view(w: WidgetSnapshot, name: str) -> WidgetView:
    return {
        "plugin_id": w.plugin_id,
        "plugin_name": name,
        "plugin_version": w.plugin_version,
        "title": w.title,
        "html": w.html,
        "refresh_interval": w.refresh_interval,
        "status": w.status,
        "error": w.error,
        "rendered_at": w.rendered_at.isoformat() if w.rendered_at else None,
        "attempted_at": w.attempted_at.isoformat(),
        "stale_since": w.stale_since.isoformat() if w.stale_since else None,
        "next_due_at": w.next_due_at.isoformat(),
        "duration_ms": w.duration_ms,
        "etag": w.etag,
        "ok": w.status in (SUCCESS, "ok"),
    }
