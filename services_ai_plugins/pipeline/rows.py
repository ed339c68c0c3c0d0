"""The rows the pipeline stores: events, hook results and dead letters. The batch processor and
backfill build theirs here, so a result looks the same whichever path stored it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from services_ai_plugins.calling.caller import Outcome, Target
from services_ai_plugins.infra.models import utcnow

__all__ = ["MAX_DEAD_PAYLOAD", "MAX_REASON", "dead_row", "dump_body", "event_row", "result_row"]

MAX_DEAD_PAYLOAD = 256 * 1024
MAX_REASON = 2000


def result_row(event_id: str, target: Target, hook: str, outcome: Outcome, attempts: int) -> dict[str, Any]:
    """One row of ``hook_results``; the result stays as the encoded JSON the caller checked."""
    return {
        "event_id": event_id,
        "plugin_id": target.plugin_id,
        "plugin_version": target.version,
        "hook": hook,
        "status": outcome.status,
        "result_json": outcome.result_json,
        "error": outcome.error,
        "traceback": outcome.frames_data(),
        "duration_ms": outcome.duration_ms,
        "attempts": attempts,
        "created_at": utcnow(),
    }


def event_row(
    event: Any, attempts: int, failures: int, now: datetime, status: str = "done"
) -> dict[str, Any]:
    """One row of ``events``: ``done`` once every due result is stored."""
    return {
        "event_id": event.event_id,
        "type": event.type,
        "source": event.source,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "completed_at": utcnow(),
        "payload": event.model_dump(mode="json"),
        "status": status,
        "failures": failures,
        "attempts": attempts,
    }


def dump_body(body: Any) -> str:
    """A message body as text for the dead-letter store (capped)."""
    if isinstance(body, str):
        text = body
    elif isinstance(body, bytes):  # a pickle body, say: kept legible, bytes as \xNN escapes
        text = body.decode("utf-8", "backslashreplace")
    else:
        try:
            text = json.dumps(body, default=repr)
        except (TypeError, ValueError, RecursionError):
            text = repr(body)
    # PostgreSQL text cannot hold NUL: written as an escape, the row is stored, not lost.
    return text.replace("\x00", "\\x00")[:MAX_DEAD_PAYLOAD]


def dead_row(body: Any, attempts: int, reason: str, stage: str, now: datetime) -> dict[str, Any]:
    """One row of ``dead_letters``: what could not be processed, and why."""
    event_id = body.get("event_id") if isinstance(body, dict) else None
    kind = body.get("type") if isinstance(body, dict) else None
    return {
        "event_id": event_id[:128] if isinstance(event_id, str) else None,
        "event_type": kind[:40] if isinstance(kind, str) else None,
        "payload": dump_body(body),
        "reason": reason[:MAX_REASON],
        "stage": stage,
        "attempts": attempts,
        "created_at": now,
        "replayed_at": None,
    }
