"""Celery tasks: thin functions that take ids or validated payloads and call the services.

Events are consumed in batches (celery-batches): the worker's main process buffers up to
``SERVICES_AI_BATCH_SIZE`` messages or ``SERVICES_AI_BATCH_INTERVAL`` seconds, then one pool
process handles the whole batch in one database transaction and the messages are acknowledged
after it commits. A pool process that dies mid-batch has every message of its batch rejected
back onto the queue (Celery's ``task_reject_on_worker_lost`` for a batch).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime
from typing import Any

from celery.concurrency.solo import TaskPool as SoloPool
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task

from services_ai_plugins.config import get_config
from services_ai_plugins.errors import PluginError
from services_ai_plugins.host import Host
from services_ai_plugins.infra.broker import (
    EVENT_TASK,
    EXPORT_TASK,
    REPLAY_TASK,
    WIDGET_REFRESH_TASK,
    WIDGET_TICK_TASK,
)
from services_ai_plugins.infra.celery_internals import acknowledge_all
from services_ai_plugins.pipeline.processor import ACK, REQUEUE, RETRY, Incoming
from workers import state
from workers.celery_app import app

log = logging.getLogger(__name__)
_config = get_config()


class EventBatches(Batches):  # type: ignore[misc]
    """Batches sized by the load, acknowledged message by message.

    celery-batches flushes a batch when it is full or when its interval runs out. Here, while
    no batch is running, what has arrived is handed over at once: at low load an event does not
    wait for the interval (low latency). While a batch runs, messages pile up and go together
    when it finishes, so batches grow exactly when their fixed cost (a transaction, a commit)
    needs sharing (group commit). Another pool process takes a batch only when one is full
    (slow plugins still get every pool process). Measured: 1.5x the throughput of a fixed
    interval, and of handing a part batch to a second pool process after the interval, at
    the same or lower latency (docs/BENCHMARKS.md). The interval still wakes delayed (retried)
    messages. Messages are acknowledged, retried or requeued one by one, as the task decides,
    and all requeued if the pool process running the batch dies.
    """

    _in_flight = 0
    _slots = 0

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Any:
        handler = super().Strategy(task, app, consumer)
        pool = consumer.pool
        # The solo pool runs a batch inline, blocking the consumer: there, batches must fill.
        self._slots = 0 if isinstance(pool, SoloPool) else int(pool.num_processes or 1)

        def on_message(*args: Any, **kwargs: Any) -> None:
            handler(*args, **kwargs)
            if self._slots and self._in_flight == 0 and not self._buffer.empty():
                self._do_flush()

        return on_message

    def _do_flush(self) -> None:
        # While a batch runs, a part batch waits for it (then goes with what piled up); a full
        # batch goes to another pool process if one is free.
        if (
            self._slots
            and self._in_flight
            and not (self._buffer.qsize() >= self.flush_every and self._in_flight < self._slots)
        ):
            return
        super()._do_flush()

    def _finished(self) -> None:
        self._in_flight -= 1
        if self._slots and not self._buffer.empty():
            self._do_flush()

    def flush(self, requests: Collection[Any]) -> Any:
        requests = list(requests)
        # Only what the task reads crosses to the pool process (not whole SimpleRequests with
        # every header): less pickling in the consumer, which is the busiest process.
        simple = ([_slim(r) for r in requests],)
        settled = False

        def settle(actions: list[str] | None) -> None:
            nonlocal settled
            if settled:  # a hard time limit can report twice
                return
            settled = True
            if not isinstance(actions, list) or len(actions) != len(requests):
                # The batch crashed before deciding, or its pool process died: nothing was
                # committed for the messages not yet settled, so they are delivered again.
                actions = [REQUEUE] * len(requests)
            acked = []
            for req, action in zip(requests, actions, strict=True):
                if action == REQUEUE:
                    req.reject(requeue=True)
                else:
                    acked.append(req)
            acknowledge_all(acked)
            self._finished()

        def on_error(*_: Any) -> None:  # the pool process died (or hit the hard time limit)
            if not settled:
                log.error("a worker process died during a batch of %d; requeueing it", len(requests))
            settle(None)

        self._in_flight += 1
        return self._pool.apply_async(
            apply_batches_task, (self, simple, 0, None), callback=settle, error_callback=on_error
        )


def _slim(request: Any) -> tuple[Any, int, bool]:
    args, kwargs = request.args, request.kwargs
    body = args[0] if args else kwargs.get("event")
    redelivered = bool((request.delivery_info or {}).get("redelivered"))
    return body, int(kwargs.get("attempt", 1) or 1), redelivered


@app.task(
    name=EVENT_TASK,
    base=EventBatches,
    flush_every=_config.batch_size,
    flush_interval=_config.batch_interval,
    acks_late=True,
)
def process_events(requests: list[SimpleRequest | tuple[Any, int, bool]]) -> list[str]:
    """Process a batch of events; return one action per message (ack / requeue)."""
    items = [Incoming(*(r if isinstance(r, tuple) else _slim(r))) for r in requests]
    try:
        host = state.get()
        report = host.processor.process(items)
    except Exception:
        log.exception("batch of %d failed unexpectedly; requeueing it", len(items))
        return [REQUEUE] * len(items)
    actions = []
    for item, disp in zip(items, report.dispositions, strict=True):
        if disp.action != RETRY:
            actions.append(disp.action)
            continue
        actions.append(_retry_later(host, item, disp.attempt, disp.countdown))
    return actions


def _retry_later(host: Host, item: Incoming, attempt: int, countdown: float) -> str:
    """Send the event again with a delay, or to the dead-letter store when out of tries."""
    if attempt > host.config.event_max_attempts:
        try:
            host.processor.dead_letter_exhausted(
                [item], f"gave up after {item.attempt} attempts: the database kept failing"
            )
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
