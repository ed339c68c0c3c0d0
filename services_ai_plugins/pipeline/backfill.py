"""Backfill: call one plugin for stored events it has no result for (after it was enabled or
granted a permission, or after its breaker skipped some), through the same hook-calling path,
row builders and store write as the batch processor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select

from services_ai_plugins.calling.caller import HookCaller
from services_ai_plugins.calling.executor import ERROR, RETRY, SUCCESS
from services_ai_plugins.calling.permissions import EVENT_HOOKS
from services_ai_plugins.calling.requests import event_call, event_redactions
from services_ai_plugins.errors import PluginStateError
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import EventRecord, HookResult
from services_ai_plugins.lifecycle.runtime import PluginRuntime
from services_ai_plugins.pipeline.rows import result_row
from services_ai_plugins.pipeline.store import ResultStore

__all__ = ["Backfill", "Progress"]

HOOK_EVENTS = {hook: kind for kind, hook in EVENT_HOOKS.items()}
#: ``(done, total)``, after each event.
Progress = Callable[[int, int], None]
CHUNK = 50


class Backfill:
    def __init__(self, db: Database, runtime: PluginRuntime, caller: HookCaller) -> None:
        self.db = db
        self.runtime = runtime
        self.caller = caller

    def run(
        self,
        plugin_id: str,
        since: datetime,
        until: datetime | None = None,
        include_failed: bool = False,
        progress: Progress | None = None,
    ) -> dict[str, int]:
        """Call ``plugin_id`` for events that occurred in ``[since, until)`` and have no result
        of it. ``include_failed`` re-runs those it failed on too; their row is replaced (never
        a second row). A ``TransientError`` is stored as a failure here (re-run it later)."""
        self.runtime.refresh(force=True)
        targets = {
            hook: target
            for hook in HOOK_EVENTS
            for target in self.runtime.targets(hook)
            if target.plugin_id == plugin_id
        }
        if not targets:
            raise PluginStateError(
                plugin_id,
                "is not enabled with a permission for any event hook it implements; nothing to replay",
            )
        done = HookResult.__table__.alias("done")
        cond = [EventRecord.type.in_([HOOK_EVENTS[h] for h in targets]), EventRecord.occurred_at >= since]
        if until is not None:
            cond.append(EventRecord.occurred_at < until)
        have = select(done.c.event_id).where(
            done.c.event_id == EventRecord.event_id, done.c.plugin_id == plugin_id
        )
        if include_failed:
            have = have.where(done.c.status == SUCCESS)
        stmt = (
            select(EventRecord.event_id, EventRecord.type, EventRecord.payload)
            .where(and_(*cond), ~have.exists())
            .order_by(EventRecord.occurred_at)
        )
        with self.db.session() as s:
            todo = list(s.execute(stmt).all())
        counts = {"events": len(todo), "success": 0, "failed": 0}
        store = ResultStore(self.db)
        try:
            for start in range(0, len(todo), CHUNK):
                rows = self._chunk(targets, todo[start : start + CHUNK], counts)
                with store.connection() as conn:
                    store.write(conn, [], rows, [], replace=True)
                if progress:
                    progress(min(start + CHUNK, len(todo)), len(todo))
        finally:
            store.close()
        return counts

    def _chunk(
        self, targets: dict[str, Any], todo: list[Any], counts: dict[str, int]
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for hook, target in targets.items():
            mine = [(event_id, payload) for event_id, kind, payload in todo if EVENT_HOOKS[kind] == hook]
            if not mine:
                continue
            calls = []
            for event_id, payload in mine:
                data = dict(payload.get("data") or {})
                previous = data.pop("previous_state", None)
                meta = {
                    "event_id": event_id,
                    "type": payload.get("type"),
                    "occurred_at": payload.get("occurred_at"),
                    "source": payload.get("source"),
                    "attempt": 1,
                    "replay": True,
                }
                calls.append(
                    event_call(hook, target.plugin_id, data, previous, meta, event_redactions(data, previous))
                )
            for (event_id, _), got in zip(mine, self.caller.call(hook, target, calls), strict=True):
                outcome = (
                    replace(got, status=ERROR, error=f"asked for a retry: {got.error}")
                    if got.status == RETRY
                    else got
                )
                counts["success" if outcome.ok else "failed"] += 1
                rows.append(result_row(event_id, target, hook, outcome, 1))
        return rows
