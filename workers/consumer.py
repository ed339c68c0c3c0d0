"""The worker's message consumer: Celery's own, except that a message it cannot use goes to the
dead-letter store with the reason before Celery acknowledges or rejects it (once; never back on
the queue). Celery alone logs it and drops it: a pickle or YAML body (only JSON is accepted), a
body that does not decode, a task name no worker knows, a message that is not a task at all.

Set as ``worker_consumer`` (a documented Celery setting); the callbacks overridden are Celery's
documented hooks for these cases."""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from services_ai_plugins.config import get_config
from services_ai_plugins.errors import one_line
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import utcnow
from services_ai_plugins.pipeline.rows import dead_row
from services_ai_plugins.pipeline.store import ResultStore

__all__ = ["Consumer"]

log = logging.getLogger("services_ai.worker")


def dead_letter(message: Any, reason: str, stage: str) -> None:
    """Store the message's raw body with ``reason``. On the consumer's own thread, rare: a
    connection of its own, closed at once (the main process forks pool processes)."""
    db = Database(get_config().database_url)
    try:
        row = dead_row(getattr(message, "body", b""), 1, reason, stage, utcnow())
        store = ResultStore(db)
        with store.connection() as conn:
            store.write(conn, [], [], [row])
    except Exception:
        log.exception("could not store a dead letter for an unusable message (%s)", reason)
    finally:
        db.dispose()


class Consumer(CeleryConsumer):  # type: ignore[misc]
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        kind = getattr(message, "content_type", None) or "no content type"
        dead_letter(message, f"message body ({kind}) not decoded: {one_line(exc, 300)}", "decode")
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        dead_letter(message, "not a task message (no task name in its headers)", "decode")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = (getattr(message, "headers", None) or {}).get("task", "?")
        dead_letter(message, f"task {str(name)[:100]!r} is not one of this worker's", "decode")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        dead_letter(message, f"invalid task message: {one_line(exc, 300)}", "decode")
        super().on_invalid_task(body, message, exc)
