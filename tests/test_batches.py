"""The batching consumer's rule: with no batch running, what arrives goes at once; while one
runs, what gathered goes to a free pool process at the interval's tick; while every pool process
has a batch, messages pile up and go together when one finishes (group commit)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery

from services_ai_plugins.infra.internals.batches import EventBatches


@pytest.fixture
def batches() -> Any:
    app = Celery("batches-test", set_as_current=False)

    @app.task(name="batches-test.events", base=EventBatches, flush_every=50, flush_interval=60, shared=False)
    def events(requests: list[Any]) -> None:  # pragma: no cover - never run here
        raise AssertionError("the pool is not run in this test")

    task = app.tasks["batches-test.events"]
    task.sent = []

    def send(requests: Any) -> None:  # what flush does, without a pool: one more batch in flight
        task.sent.append(len(list(requests)))
        task._in_flight += 1

    task.flush = send
    return task


def _arrive(task: Any, n: int) -> None:
    for _ in range(n):
        task._buffer.put(SimpleNamespace(eta=None))
    if task._slots and task._in_flight == 0:  # what on_message does after each message
        task._do_flush()


def _tick(task: Any) -> None:
    task._do_flush()  # the interval's timer


def test_a_free_pool_process_takes_what_gathered_while_another_is_busy(batches: Any) -> None:
    batches._slots = 2
    _arrive(batches, 3)
    assert batches.sent == [3]
    _arrive(batches, 1)  # the first batch still runs: these gather until the interval's tick
    _arrive(batches, 1)
    assert batches.sent == [3]
    _tick(batches)  # then the second pool process takes them, not waiting for the first batch
    assert batches.sent == [3, 2]
    _arrive(batches, 4)  # both busy: they wait, ticks or not
    _tick(batches)
    _arrive(batches, 5)
    assert batches.sent == [3, 2]
    batches._finished()  # one finishes: everything that piled up goes together
    assert batches.sent == [3, 2, 9]
    assert batches._in_flight == 2
    batches._finished()
    batches._finished()
    assert batches._in_flight == 0 and batches._buffer.empty()


def test_a_full_batch_waits_for_a_busy_pool_too(batches: Any) -> None:
    batches._slots = 1
    _arrive(batches, 1)
    for _ in range(60):  # more than flush_every arrive while the only process is busy
        batches._buffer.put(SimpleNamespace(eta=None))
    batches._do_flush()  # celery-batches' own trigger when the buffer is full
    assert batches.sent == [1]
    batches._finished()
    assert batches.sent == [1, 60]


def test_the_solo_pool_keeps_celery_batches_own_rule(batches: Any) -> None:
    batches._slots = 0  # solo: the batch runs in the consumer, so batches must fill
    _arrive(batches, 3)
    assert batches.sent == []
    _tick(batches)  # the interval (or a full buffer) flushes
    assert batches.sent == [3]
