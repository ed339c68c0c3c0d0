"""Stored events, their results, the dead-letter store and its replay, and the counts ops look
at. Read by the CLI and the web app; written by workers (:mod:`~services_ai_plugins.pipeline.processor`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from typing_extensions import TypedDict

from schemas.errors import ContractError
from services_ai_plugins.errors import EventError, NotFoundError
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import DeadLetter, EventRecord, HookResult, utcnow

__all__ = ["DeadLetterView", "EventDetail", "EventService", "EventView", "ReplayOutcome", "ResultView"]


class ResultView(TypedDict):
    """One plugin's result for an event (``events show``)."""

    plugin_id: str
    plugin_version: str
    hook: str
    status: str
    result: Any
    error: str | None
    traceback: list[dict[str, Any]] | None
    duration_ms: float
    attempts: int
    created_at: str


class EventView(TypedDict):
    event_id: str
    type: str
    source: str
    occurred_at: str
    received_at: str
    completed_at: str | None
    status: str
    failures: int
    attempts: int


class DeadLetterView(TypedDict):
    id: int
    event_id: str | None
    event_type: str | None
    stage: str
    reason: str
    attempts: int
    created_at: str
    replayed_at: str | None
    payload: str


class EventDetail(TypedDict, total=False):
    """``events show``: the event's fields, its data and one result per plugin called; or, for
    an event that never got past validation, its dead letter."""

    event_id: str
    type: str | None
    source: str
    occurred_at: str
    received_at: str
    completed_at: str | None
    status: str
    failures: int
    attempts: int
    data: Any
    results: list[ResultView]
    dead_letter: DeadLetterView


#: ``(dead letter id, the new event id or None, why not or None)``
ReplayOutcome = tuple[int, str | None, str | None]


def _result_view(r: HookResult) -> ResultView:
    return {
        "plugin_id": r.plugin_id,
        "plugin_version": r.plugin_version,
        "hook": r.hook,
        "status": r.status,
        "result": r.result,
        "error": r.error,
        "traceback": r.traceback,
        "duration_ms": r.duration_ms,
        "attempts": r.attempts,
        "created_at": r.created_at.isoformat(),
    }


def _event_view(e: EventRecord) -> EventView:
    return {
        "event_id": e.event_id,
        "type": e.type,
        "source": e.source,
        "occurred_at": e.occurred_at.isoformat(),
        "received_at": e.received_at.isoformat(),
        "completed_at": e.completed_at.isoformat() if e.completed_at else None,
        "status": e.status,
        "failures": e.failures,
        "attempts": e.attempts,
    }


def _dead_view(d: DeadLetter) -> DeadLetterView:
    return {
        "id": d.id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "stage": d.stage,
        "reason": d.reason,
        "attempts": d.attempts,
        "created_at": d.created_at.isoformat(),
        "replayed_at": d.replayed_at.isoformat() if d.replayed_at else None,
        "payload": d.payload,
    }


class EventService:
    """Reading events and results; replaying what failed."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- events ---------------------------------------------------------------------------

    def recent(
        self,
        limit: int = 50,
        event_type: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
    ) -> list[EventView]:
        stmt = select(EventRecord).order_by(EventRecord.received_at.desc()).limit(limit)
        if event_type:
            stmt = stmt.where(EventRecord.type == event_type)
        if status == "failed":
            stmt = stmt.where(EventRecord.failures > 0)
        elif status:
            stmt = stmt.where(EventRecord.status == status)
        if since:
            stmt = stmt.where(EventRecord.occurred_at >= since)
        with self.db.session() as s:
            return [_event_view(e) for e in s.scalars(stmt)]

    def show(self, event_id: str) -> EventDetail:
        """The event's fields, its payload, and one entry per plugin called."""
        with self.db.session() as s:
            event = s.get(EventRecord, event_id)
            if event is None:
                dead = s.scalars(
                    select(DeadLetter).where(DeadLetter.event_id == event_id).order_by(DeadLetter.id.desc())
                ).first()
                if dead is not None:
                    return {
                        "event_id": event_id,
                        "type": dead.event_type,
                        "status": "dead",
                        "dead_letter": _dead_view(dead),
                        "results": [],
                    }
                raise NotFoundError(
                    "event", event_id, "not found (not yet taken by a worker, or never published)"
                )
            results = s.scalars(
                select(HookResult).where(HookResult.event_id == event_id).order_by(HookResult.plugin_id)
            ).all()
            detail: EventDetail = {
                **_event_view(event),  # type: ignore[typeddict-item]
                "data": event.payload.get("data"),
                "results": [_result_view(r) for r in results],
            }
            return detail

    def plugin_results(self, plugin_id: str, limit: int = 50) -> list[dict[str, Any]]:
        stmt = (
            select(HookResult)
            .where(HookResult.plugin_id == plugin_id)
            .order_by(HookResult.created_at.desc())
            .limit(limit)
        )
        with self.db.session() as s:
            return [{"event_id": r.event_id, **_result_view(r)} for r in s.scalars(stmt)]

    # -- dead letters -----------------------------------------------------------------------

    def dead_letters(self, limit: int = 50, include_replayed: bool = False) -> list[DeadLetterView]:
        stmt = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
        if not include_replayed:
            stmt = stmt.where(DeadLetter.replayed_at.is_(None))
        with self.db.session() as s:
            return [_dead_view(d) for d in s.scalars(stmt)]

    def replay_dead(self, ids: Iterable[int] | None, publish: Callable[[Any], str]) -> list[ReplayOutcome]:
        """Publish dead letters again. Returns (id, new event id or None, error or None) each.

        A payload that still breaks the contract stays in the store, with the reason shown.
        """
        from schemas.jsonload import strict_json_loads

        stmt = select(DeadLetter).where(DeadLetter.replayed_at.is_(None)).order_by(DeadLetter.id)
        if ids is not None:
            wanted = list(ids)
            stmt = select(DeadLetter).where(DeadLetter.id.in_(wanted)).order_by(DeadLetter.id)
        with self.db.session() as s:
            letters = [(d.id, d.payload, d.replayed_at) for d in s.scalars(stmt)]
        if ids is not None:
            found = {i for i, _, _ in letters}
            missing = [i for i in wanted if i not in found]
            if missing:
                raise NotFoundError("dead letter", ", ".join(map(str, missing)))
        out: list[tuple[int, str | None, str | None]] = []
        for letter_id, payload, replayed_at in letters:
            if replayed_at is not None:
                out.append((letter_id, None, "already replayed"))
                continue
            try:
                event_id = publish(strict_json_loads(payload, "dead letter"))
            except (ContractError, EventError) as exc:
                out.append((letter_id, None, str(exc)))
                continue
            with self.db.session() as s:
                s.execute(update(DeadLetter).where(DeadLetter.id == letter_id).values(replayed_at=utcnow()))
            out.append((letter_id, event_id, None))
        return out

    # -- counts -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Events by state. ``done``: every due result stored; ``failed``: of those, how many
        have at least one failed result; ``pending``: stored but not done (queued messages are
        added by :func:`status`); ``dead``: in the dead-letter store, not replayed."""
        with self.db.session() as s:
            by_status = dict(
                s.execute(select(EventRecord.status, func.count()).group_by(EventRecord.status)).all()
            )
            failed = (
                s.scalar(select(func.count()).where(EventRecord.status == "done", EventRecord.failures > 0))
                or 0
            )
            dead = s.scalar(select(func.count()).where(DeadLetter.replayed_at.is_(None))) or 0
            by_result = dict(
                s.execute(select(HookResult.status, func.count()).group_by(HookResult.status)).all()
            )
        done = int(by_status.get("done", 0))
        pending = sum(int(v) for k, v in by_status.items() if k != "done")
        return {
            "stored": done + pending,
            "done": done,
            "failed": int(failed),
            "pending": pending,
            "dead": int(dead),
            "results": {k: int(v) for k, v in by_result.items()},  # type: ignore[dict-item]
        }
