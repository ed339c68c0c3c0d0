"""What one plugin has been doing: its recent results (with a failure's traceback frames), its
error rate and call durations over its latest calls, and whether the host has stopped
calling it (breaker open, quarantined, a problem workers see)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services_ai_plugins.calling.executor import FAILURE_STATUSES, SKIPPED
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import HookResult, Plugin, PluginBreaker, PluginProblem, utcnow
from services_ai_plugins.pipeline.events import EventService

__all__ = ["ActivityService", "percentile"]

WINDOW = 500  # the latest calls the figures are computed over


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


class ActivityService:
    def __init__(self, db: Database, events: EventService) -> None:
        self.db = db
        self.events = events

    def plugin(self, plugin_id: str, recent: int = 50) -> dict[str, Any]:
        stmt = (
            select(HookResult.status, HookResult.duration_ms)
            .where(HookResult.plugin_id == plugin_id)
            .order_by(HookResult.created_at.desc())
            .limit(WINDOW)
        )
        with self.db.session() as s:
            calls = s.execute(stmt).all()
            breaker = s.get(PluginBreaker, plugin_id)
            plugin = s.get(Plugin, plugin_id)
            problems = {
                p.kind: {"reason": p.reason, "count": p.count, "last_seen": p.last_seen.isoformat()}
                for p in s.scalars(select(PluginProblem).where(PluginProblem.plugin_id == plugin_id))
            }
        by_status: dict[str, int] = {}
        for status, _ in calls:
            by_status[status] = by_status.get(status, 0) + 1
        ran = [float(d) for st, d in calls if st != SKIPPED]
        failed = sum(n for st, n in by_status.items() if st in FAILURE_STATUSES)
        counted = sum(n for st, n in by_status.items() if st != SKIPPED)
        now = utcnow()
        return {
            "plugin_id": plugin_id,
            "window": len(calls),
            "by_status": by_status,
            "error_rate": (failed / counted) if counted else None,
            "p50_ms": percentile(ran, 0.50),
            "p95_ms": percentile(ran, 0.95),
            "breaker": {
                "open": bool(breaker and breaker.open_until > now),
                "open_until": breaker.open_until.isoformat() if breaker else None,
                "cooldown": breaker.cooldown if breaker else None,
            },
            "quarantined": bool(plugin and not plugin.enabled and plugin.disabled_reason),
            "disabled_reason": plugin.disabled_reason if plugin else None,
            "problems": problems,
            "results": self.events.plugin_results(plugin_id, limit=recent),
        }
