"""The batching consumer of the events task: celery-batches, sized by the load (group commit)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from celery.concurrency.solo import TaskPool as SoloPool
from celery_batches import Batches
from celery_batches import trace as batches_trace
from celery_batches.trace import apply_batches_task

from services_ai_plugins.infra.internals.redis import acknowledge_all

__all__ = ["PRIVATE_NAMES", "REQUEUE", "EventBatches", "slim_request"]

log = logging.getLogger(__name__)

#: The event task's action for a message to deliver again (``pipeline.processor.REQUEUE``).
REQUEUE = "requeue"

#: (object, attribute): every private name this module relies on.
PRIVATE_NAMES: list[tuple[Any, str]] = [
    (Batches, "_buffer"),
    (Batches, "_do_flush"),
    (Batches, "_pool"),
    (Batches, "Strategy"),
    (Batches, "flush"),
    (Batches, "flush_every"),
    (batches_trace, "apply_batches_task"),
]


class EventBatches(Batches):
    """Batches sized by the load, acknowledged message by message.

    celery-batches flushes a batch when it is full or when its interval runs out. Here, while
    no batch is running, what has arrived is handed over at once: at low load an event does not
    wait for the interval (low latency). While one runs, what arrives gathers for up to one
    interval (``SERVICES_AI_BATCH_INTERVAL``, 5 ms) and then goes to a pool process that is free,
    so it does not wait for the running batch. While every pool process has a batch, messages
    pile up and go together when one finishes, so batches grow exactly when their fixed cost (a
    transaction, a commit) needs sharing (group commit). Measured against the rule before (a
    part batch waited for the running one; only a full batch took a second process): at half
    the maximum p50 12 -> 9 ms, p99 21-33 -> 17-20 ms; handing each message to a free process
    at once, without the interval's gathering, made batches 25% smaller and the machine
    busier, for no gain (docs/BENCHMARKS.md). The interval also wakes delayed (retried)
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
        # Called by the interval's timer, by a full buffer and when a batch finishes: what has
        # gathered goes to a free pool process; while every one has a batch, it waits for one
        # to finish (then goes with what piled up meanwhile).
        if self._slots and self._in_flight >= self._slots:
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
        simple = ([slim_request(r) for r in requests],)
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


def slim_request(request: Any) -> tuple[Any, int, bool]:
    """What the event task reads of a Celery request: the body, the attempt, redelivered."""
    args, kwargs = request.args, request.kwargs
    body = args[0] if args else kwargs.get("event")
    redelivered = bool((request.delivery_info or {}).get("redelivered"))
    return body, int(kwargs.get("attempt", 1) or 1), redelivered
