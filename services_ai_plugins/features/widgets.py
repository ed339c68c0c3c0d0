"""Dashboard widgets: refreshed on each plugin's own interval, stored sanitised, read cheaply.

The dashboard reads :meth:`WidgetService.snapshots` - one indexed query, no plugin code. Beat
runs a tick every few seconds; it refreshes the widgets that are due. A failing refresh keeps
the last good snapshot and records the error and since when it is stale.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, and_, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite

from services_ai_plugins.calling.dispatch import SUCCESS, Outcome, invoke
from services_ai_plugins.calling.runtime import PluginRuntime, Target
from services_ai_plugins.calling.sanitize import sanitize_html
from services_ai_plugins.host import Host
from services_ai_plugins.infra.models import HookResult, Plugin, PluginPermission, WidgetSnapshot, utcnow

HOOK = "dashboard_widget"
MIN_INTERVAL = 5
MAX_INTERVAL = 86_400
RETRY_AFTER_FAILURE = 60
RECENT_RESULTS = 50


@dataclass(frozen=True)
class Rendered:
    title: str
    html: str
    refresh_interval: int


def normalise(value: Any, default_title: str, default_interval: int) -> Rendered:
    """Accept both return forms: an HTML string, or ``{"html", "title", "refresh_interval"}``."""
    if isinstance(value, str):
        return Rendered(default_title, sanitize_html(value), default_interval)
    if not isinstance(value, dict):
        raise ValueError(
            f"returned {type(value).__name__}; expected HTML or {{html, title, refresh_interval}}"
        )
    unknown = sorted(set(value) - {"html", "title", "refresh_interval"})
    if unknown:
        raise ValueError(f"returned unknown key(s) {', '.join(unknown)}")
    html = value.get("html")
    if not isinstance(html, str):
        raise ValueError("html must be a string")
    title = value.get("title", default_title)
    if not isinstance(title, str):
        raise ValueError("title must be a string")
    interval = value.get("refresh_interval", default_interval)
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise ValueError("refresh_interval must be a number of seconds")
    interval = int(min(max(interval, MIN_INTERVAL), MAX_INTERVAL))
    return Rendered(" ".join(title.split())[:200] or default_title, sanitize_html(html), interval)


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
    def __init__(self, host: Host) -> None:
        self.host = host
        self.db = host.db
        insert_fn = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        self._insert = insert_fn

    # -- the read path (dashboard) --------------------------------------------------------

    def snapshots(self) -> list[dict[str, Any]]:
        """Current snapshots of enabled plugins holding ``dashboard_widget``; no plugin runs.

        One query over three primary keys, read as plain rows (no ORM objects, no session):
        the dashboard polls this.
        """
        return [dict(zip(_READ_KEYS, _row_values(r), strict=True)) for r in self.db.read(self._read)]

    _read = (
        select(*_READ_COLUMNS)
        .join(Plugin, and_(Plugin.id == WidgetSnapshot.plugin_id, Plugin.enabled.is_(True)))
        .join(
            PluginPermission,
            and_(
                PluginPermission.plugin_id == WidgetSnapshot.plugin_id,
                PluginPermission.name == HOOK,
                PluginPermission.granted.is_(True),
            ),
        )
        .order_by(WidgetSnapshot.plugin_id)
    )

    # -- scheduling -------------------------------------------------------------------------

    def due(self, runtime: PluginRuntime, now: datetime | None = None) -> list[str]:
        """Plugins whose widget should be rendered now (never rendered, or past their time)."""
        now = now or utcnow()
        runtime.refresh()
        candidates = [t.plugin.plugin_id for t in runtime.targets(HOOK)]
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

    def refresh(
        self, runtime: PluginRuntime, plugin_id: str, actor: str | None = None
    ) -> dict[str, Any] | None:
        """Render one plugin's widget now and store it. ``None`` if it may not have one."""
        runtime.refresh()
        target = next((t for t in runtime.targets(HOOK) if t.plugin.plugin_id == plugin_id), None)
        if target is None:
            return None
        now = utcnow()
        outcome = self._render(runtime, target, actor)
        default_interval = self.host.config.widget_default_refresh
        rendered: Rendered | None = None
        error = outcome.error
        status = outcome.status
        if outcome.ok:
            try:
                rendered = normalise(outcome.result, target.plugin.manifest.name, default_interval)
            except (ValueError, TypeError) as exc:
                status, error = "error", f"widget {exc}"
        with self.db.session() as s:
            current = s.get(WidgetSnapshot, plugin_id)
            if rendered is not None:
                values = {
                    "plugin_version": target.plugin.version,
                    "title": rendered.title,
                    "html": rendered.html,
                    "refresh_interval": rendered.refresh_interval,
                    "status": "ok",
                    "error": None,
                    "rendered_at": now,
                    "attempted_at": now,
                    "stale_since": None,
                    "next_due_at": now + timedelta(seconds=rendered.refresh_interval),
                    "duration_ms": outcome.duration_ms,
                    "etag": _etag(rendered.title, rendered.html),
                }
            else:
                interval = current.refresh_interval if current else default_interval
                values = {
                    "plugin_version": target.plugin.version,
                    "title": current.title if current else target.plugin.manifest.name,
                    "html": current.html if current else "",
                    "refresh_interval": interval,
                    "status": status,
                    "error": error,
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
            return _view(snap, target.plugin.manifest.name)

    def _render(self, runtime: PluginRuntime, target: Target, actor: str | None) -> Outcome:
        with self.db.session() as s:
            recent = [
                {
                    "hook": r.hook,
                    "status": r.status,
                    "result": r.result,
                    "created_at": r.created_at.isoformat(),
                }
                for r in s.scalars(
                    select(HookResult)
                    .where(HookResult.plugin_id == target.plugin.plugin_id)
                    .order_by(HookResult.created_at.desc())
                    .limit(RECENT_RESULTS)
                )
            ]
        context = runtime.context(target, recent_results=recent)
        context["user"] = actor
        return invoke(
            target.call,
            {"plugin_id": target.plugin.plugin_id, "context": context},
            time_limit=self.host.config.plugin_time_limit,
            max_bytes=self.host.config.result_max_bytes * 4,
        )


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _row_values(r: Any) -> list[Any]:
    (plugin_id, name, version, title, html, interval, status, error,
     rendered, attempted, stale, due, duration, etag) = r  # fmt: skip
    return [plugin_id, name, version, title, html, interval, status, error,
            _iso(rendered), _iso(attempted), _iso(stale), _iso(due), duration, etag, status == "ok"]  # fmt: skip


def _view(w: WidgetSnapshot, name: str) -> dict[str, Any]:
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
