"""Celery tasks: thin functions that take ids or validated payloads and call the services.

Events are consumed in batches (celery-batches): the worker's main process buffers up to
``SERVICES_AI_BATCH_SIZE`` messages or ``SERVICES_AI_BATCH_INTERVAL`` seconds, then one pool
process handles the whole batch in one database transaction and the messages are acknowledged
after it commits. A pool process that dies mid-batch has every message of its batch rejected
back onto the queue (Celery's ``task_reject_on_worker_lost`` for a batch).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery_batches import SimpleRequest

from services_ai_plugins.config import get_config
from services_ai_plugins.errors import PluginError, one_line
from services_ai_plugins.host import Host
from services_ai_plugins.infra.broker import (
    EVENT_TASK,
    EXPORT_TASK,
    REPLAY_TASK,
    WIDGET_REFRESH_TASK,
    WIDGET_TICK_TASK,
)
from services_ai_plugins.infra.internals.batches import EventBatches, slim_request
from services_ai_plugins.pipeline.processor import ACK, REQUEUE, RETRY, Incoming, backoff
from workers import state
from workers.celery_app import app

log = logging.getLogger(__name__)
_config = get_config()


@app.task(
    name=EVENT_TASK,
    base=EventBatches,
    flush_every=_config.batch_size,
    flush_interval=_config.batch_interval,
    acks_late=True,
)
def process_events(requests: list[SimpleRequest | tuple[Any, int, bool]]) -> list[str]:
    """Process a batch of events; return one action per message (ack / requeue)."""
    items = [Incoming(*(r if isinstance(r, tuple) else slim_request(r))) for r in requests]
    try:
        host = state.get()
    except Exception:
        log.exception("this pool process has no host; requeueing the batch of %d", len(items))
        return [REQUEUE] * len(items)
    try:
        report = host.processor.process(items)
    except Exception as exc:
        # A failure no check foresaw (a bug, a broken installation): requeued at once it would
        # fail again at once, in a loop. Each event is tried again later, with backoff, and
        # dead-lettered with the reason once out of attempts (replayable once fixed).
        log.exception("batch of %d failed unexpectedly; each event will be tried again later", len(items))
        why = f"the batch failed: {one_line(exc, 300)}"
        return [_retry_later(host, item, item.attempt + 1, backoff(item.attempt), why) for item in items]
    actions = []
    for item, disp in zip(items, report.dispositions, strict=True):
        if disp.action != RETRY:
            actions.append(disp.action)
            continue
        actions.append(_retry_later(host, item, disp.attempt, disp.countdown))
    return actions


def _retry_later(
    host: Host, item: Incoming, attempt: int, countdown: float, why: str = "the database kept failing"
) -> str:
    """Send the event again with a delay, or to the dead-letter store when out of tries."""
    if attempt > host.config.event_max_attempts:
        try:
            host.processor.dead_letter_exhausted([item], f"gave up after {item.attempt} attempts: {why}")
            return ACK
        except Exception:
            countdown = 300.0  # the dead-letter store is in the same database: keep trying
    try:
        process_events.apply_async(
            args=[item.body], kwargs={"attempt": attempt}, countdown=countdown, retry=False
        )
    except Exception:
        log.exception("could not schedule a retry; requeueing")
        return REQUEUE
    return ACK


@app.task(name=WIDGET_TICK_TASK, acks_late=True, ignore_result=True)
def widgets_tick() -> int:
    """Beat's tick: queue a refresh for each widget that is due."""
    due = state.get().widgets.due()
    for plugin_id in due:
        refresh_widget.delay(plugin_id)
    return len(due)


@app.task(name=WIDGET_REFRESH_TASK, acks_late=True, ignore_result=True)
def refresh_widget(plugin_id: str) -> str | None:
    try:
        return str(state.get().widgets.refresh(plugin_id)["status"])
    except PluginError as exc:  # uninstalled, disabled or revoked since it was queued: nothing to do
        log.info("widget of %s not refreshed: %s", plugin_id, exc)
        return None


@app.task(name=EXPORT_TASK, acks_late=True, ignore_result=True)
def run_export(export_id: str) -> str:
    return str(state.get().exports.run(export_id)["status"])


@app.task(name=REPLAY_TASK, acks_late=True, ignore_result=True)
def replay_plugin(plugin_id: str, since: str, until: str | None, include_failed: bool) -> dict[str, int]:
    return state.get().backfill.run(
        plugin_id,
        datetime.fromisoformat(since),
        datetime.fromisoformat(until) if until else None,
        include_failed,
    )
