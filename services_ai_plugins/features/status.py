"""What ops look at: events by state, queue depths, plugins, widgets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from services_ai_plugins.host import Host
from services_ai_plugins.infra.broker import EVENTS_QUEUE, QUEUES, queue_depths, safe_url
from services_ai_plugins.infra.models import Plugin, PluginBreaker, WidgetSnapshot, utcnow
from services_ai_plugins.pipeline.events import EventService


def collect(host: Host) -> dict[str, Any]:
    """``events.total = pending + done + dead``; ``failed`` counts the done events with at least
    one failed plugin result; ``pending`` includes messages still waiting in the events queue."""
    counts = EventService(host).counts()
    broker: dict[str, Any] = {"url": safe_url(host.config.broker_url), "ok": True}
    try:
        queues: dict[str, int | None] = queue_depths(host.config)
    except Exception as exc:
        broker.update(ok=False, error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        queues = dict.fromkeys(QUEUES)
    queued = queues.get(EVENTS_QUEUE) or 0
    with host.db.session() as s:
        plugins = dict(s.execute(select(Plugin.enabled, func.count()).group_by(Plugin.enabled)).all())
        widgets = dict(
            s.execute(select(WidgetSnapshot.status, func.count()).group_by(WidgetSnapshot.status)).all()
        )
        stale = s.scalar(select(func.count()).where(WidgetSnapshot.stale_since.is_not(None))) or 0
        breakers = s.execute(
            select(PluginBreaker.plugin_id, PluginBreaker.open_until).where(
                PluginBreaker.open_until > utcnow()
            )
        ).all()
    return {
        "events": {
            "total": counts["stored"] + counts["dead"] + queued,
            "pending": counts["pending"] + queued,
            "done": counts["done"],
            "failed": counts["failed"],
            "dead": counts["dead"],
        },
        "results": counts["results"],
        "queues": queues,
        "broker": broker,
        "plugins": {
            "installed": int(sum(plugins.values())),
            "enabled": int(plugins.get(True, 0)),
        },
        "widgets": {"by_status": {k: int(v) for k, v in widgets.items()}, "stale": int(stale)},
        # Plugins not being called because they kept timing out (until when).
        "breakers_open": {pid: until.isoformat() for pid, until in breakers},
        "registry_revision": host.registry.revision(),
    }
