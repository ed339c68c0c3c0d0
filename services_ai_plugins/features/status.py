"""What ops look at: events by state, queue depths, the broker, plugins and their problems,
widgets as the dashboard shows them, open breakers, and how plugin code is isolated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from services_ai_plugins.config import Config
from services_ai_plugins.errors import one_line
from services_ai_plugins.features.widgets import WidgetService
from services_ai_plugins.infra.broker import EVENTS_QUEUE, QUEUES, broker_name, queue_depths
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import Plugin, PluginBreaker, PluginProblem, utcnow
from services_ai_plugins.lifecycle.runtime import read_revision
from services_ai_plugins.pipeline.events import EventService

__all__ = ["StatusService"]


class StatusService:
    def __init__(
        self,
        config: Config,
        db: Database,
        events: EventService,
        widgets: WidgetService,
        isolation: Callable[[], dict[str, Any]],
    ) -> None:
        self.config = config
        self.db = db
        self.events = events
        self.widgets = widgets
        self.isolation = isolation

    def collect(self) -> dict[str, Any]:
        """``events.total = pending + done + dead``; ``failed`` counts the done events with at
        least one failed plugin result; ``pending`` includes messages still waiting in the
        events queue."""
        counts = self.events.counts()
        broker: dict[str, Any] = {**broker_name(self.config), "ok": True}
        try:
            queues: dict[str, int | None] = queue_depths(self.config)
        except Exception as exc:
            broker.update(ok=False, error=one_line(exc, 200))
            queues = dict.fromkeys(QUEUES)
        queued = queues.get(EVENTS_QUEUE) or 0
        with self.db.session() as s:
            plugins = dict(s.execute(select(Plugin.enabled, func.count()).group_by(Plugin.enabled)).all())
            breakers = s.execute(
                select(PluginBreaker.plugin_id, PluginBreaker.open_until).where(
                    PluginBreaker.open_until > utcnow()
                )
            ).all()
            problems = s.scalars(select(PluginProblem).order_by(PluginProblem.plugin_id)).all()
            disabled = s.execute(
                select(Plugin.id, Plugin.disabled_reason).where(
                    Plugin.enabled.is_(False), Plugin.disabled_reason.is_not(None)
                )
            ).all()
            problem_map: dict[str, dict[str, Any]] = {}
            for p in problems:
                problem_map.setdefault(p.plugin_id, {})[p.kind] = {
                    "reason": p.reason,
                    "count": p.count,
                    "last_seen": p.last_seen.isoformat(),
                }
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
            "isolation": self.isolation(),
            "plugins": {
                "installed": int(sum(plugins.values())),
                "enabled": int(plugins.get(True, 0)),
                # Taken out of service by the host (quarantine) or by an upgrade, and why.
                "disabled": dict(disabled),
                # What workers found wrong with enabled plugins (their calls fail with it).
                "problems": problem_map,
            },
            "widgets": self.widgets.counts(),
            # Plugins not being called because they kept timing out (until when).
            "breakers_open": {pid: until.isoformat() for pid, until in breakers},
            "registry_revision": read_revision(self.db),
        }
