"""Messages that break the event contract: dead-lettered once, never retried, and replayed only
once they are fixed."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import redis
from sqlalchemy import update

from services_ai_plugins.infra.broker import EVENT_TASK, EVENTS_QUEUE
from services_ai_plugins.infra.models import DeadLetter
from tests.helpers import SAMPLE_PLUGIN
from tests.integration import Deployment, wait_for

pytestmark = pytest.mark.integration

WRONG_TYPE = {"type": "lead.created", "data": {"id": 1}}  # id must be a string
MALFORMED = '{"type": "lead.created", "data": {"id": "L-1"'  # JSON cut short


def _send_raw(deployment: Deployment, body: Any) -> None:
    """Put a message on the events queue as a buggy publisher would: no validation."""
    deployment.publisher.app.send_task(EVENT_TASK, args=[body], queue=EVENTS_QUEUE)


def test_invalid_events_are_dead_lettered_once_and_replayed_only_when_fixed(
    deployment: Deployment, redis_client: redis.Redis
) -> None:
    """Proves: a message whose event breaks the contract (a number where the id string
    belongs) and one whose body is malformed JSON each land in the dead-letter store once, with
    a reason that names the field or the JSON error; they are acknowledged, not retried (the
    store stays at 2, the broker holds nothing for redelivery, no event row is stored);
    ``services-ai dlq replay`` refuses both with the reason and leaves them in the store; once
    the stored payload is corrected, the same command publishes it and a worker processes it."""
    sample = deployment.install(SAMPLE_PLUGIN, grants=("lead_access",))
    deployment.start_worker("dlq")
    _send_raw(deployment, WRONG_TYPE)
    _send_raw(deployment, MALFORMED)

    letters = wait_for(
        lambda: (rows := deployment.events.dead_letters()) and len(rows) >= 2 and rows,
        "two dead letters",
        workers=deployment.workers,
    )
    assert len(letters) == 2, letters
    wrong = next(d for d in letters if d["payload"] != MALFORMED)
    malformed = next(d for d in letters if d["payload"] == MALFORMED)
    assert wrong["reason"] == "event: data.id: input should be a valid string"
    assert (wrong["stage"], wrong["event_type"], wrong["event_id"]) == ("validation", "lead.created", None)
    assert json.loads(wrong["payload"]) == WRONG_TYPE
    assert malformed["reason"].startswith("event: is not valid JSON: "), malformed["reason"]
    assert malformed["stage"] == "validation"

    # Not retried: both messages were acknowledged and the store does not grow.
    broker = redis_client
    wait_for(
        lambda: broker.llen(EVENTS_QUEUE) == 0 and broker.hlen("unacked") == 0,
        "the broker to hold no events queued or unacknowledged",
    )
    watch_until = time.monotonic() + 2.0
    while time.monotonic() < watch_until:
        assert len(deployment.events.dead_letters(include_replayed=True)) == 2
        time.sleep(0.2)
    assert deployment.events.counts()["stored"] == 0

    # Replaying them as they are fails, says why, and keeps them in the store.
    for letter, reason in (
        (wrong, "event: data.id: input should be a valid string"),
        (malformed, "dead letter: is not valid JSON"),
    ):
        out = deployment.cli("dlq", "replay", str(letter["id"]), expect=1)
        assert f"dead letter {letter['id']} not replayed: {reason}" in " ".join(out.stderr.split())
    assert {d["id"] for d in deployment.events.dead_letters()} == {wrong["id"], malformed["id"]}

    # An operator corrects the stored payload; the replay now goes through to a worker.
    fixed = {"type": "lead.created", "data": {"id": "L-1", "email": "ada@example.com"}}
    with deployment.host.db.session() as s:
        s.execute(update(DeadLetter).where(DeadLetter.id == wrong["id"]).values(payload=json.dumps(fixed)))
    out = deployment.cli("dlq", "replay", str(wrong["id"]))
    match = re.search(rf"dead letter {wrong['id']} replayed as event (\S+)", out.stdout)
    assert match, out.stdout
    event_id = match[1]
    deployment.wait_done([event_id])
    shown = deployment.events.show(event_id)
    assert [(r["plugin_id"], r["status"]) for r in shown["results"]] == [(sample, "success")]
    assert [d["id"] for d in deployment.events.dead_letters()] == [malformed["id"]]
    replayed = next(
        d for d in deployment.events.dead_letters(include_replayed=True) if d["id"] == wrong["id"]
    )
    assert replayed["replayed_at"] is not None
    out = deployment.cli("dlq", "replay", str(wrong["id"]), expect=1)
    assert "already replayed" in out.stderr


def test_messages_a_worker_cannot_use_are_dead_lettered_once_with_the_reason(
    deployment: Deployment, redis_client: redis.Redis
) -> None:
    """Proves: a pickle and a YAML body (only JSON is accepted), a message that is no task, a
    task name no worker knows, a task whose argument is no event (``args=[42]``) and one with
    no argument at all each land in the dead-letter store once with a reason that says which;
    none is requeued (the broker holds nothing, the store does not grow), and the worker goes on
    to process a good event."""
    from kombu import Exchange, Producer

    deployment.install(SAMPLE_PLUGIN, grants=("lead_access",))
    worker = deployment.start_worker("undecodable", pool="solo")
    app = deployment.publisher.app
    good_lead = {"type": "lead.created", "data": {"id": "L-ok"}}
    app.send_task(EVENT_TASK, args=[good_lead], queue=EVENTS_QUEUE, serializer="pickle")
    app.send_task(EVENT_TASK, args=[good_lead], queue=EVENTS_QUEUE, serializer="yaml")
    app.send_task("services_ai.nobody.knows", args=[good_lead], queue=EVENTS_QUEUE)
    app.send_task(EVENT_TASK, args=[42], queue=EVENTS_QUEUE)
    app.send_task(EVENT_TASK, args=[], queue=EVENTS_QUEUE)
    with app.connection_for_write() as conn:
        Producer(conn).publish(
            {"hello": "not a task"},
            exchange=Exchange(EVENTS_QUEUE, type="direct"),
            routing_key=EVENTS_QUEUE,
            serializer="json",
        )
    expected = 6
    letters = wait_for(
        lambda: (rows := deployment.events.dead_letters()) and len(rows) >= expected and rows,
        f"{expected} dead letters",
        on_timeout=lambda: str([d["reason"] for d in deployment.events.dead_letters()]),
        timeout=40,
        workers=[worker],
    )
    reasons = sorted(d["reason"] for d in letters)
    assert len(reasons) == expected, reasons
    joined = "\n".join(reasons)
    for needle in (
        "application/x-python-serialize",
        "application/x-yaml",
        "'services_ai.nobody.knows' is not one of this worker's",
        "not a task message",
        "must be a JSON object",
    ):
        assert needle in joined, (needle, reasons)
    wait_for(
        lambda: redis_client.llen(EVENTS_QUEUE) == 0 and redis_client.hlen("unacked") == 0,
        "the broker to hold nothing queued or unacknowledged",
    )
    watch_until = time.monotonic() + 2.0
    while time.monotonic() < watch_until:
        assert len(deployment.events.dead_letters(include_replayed=True)) == expected
        time.sleep(0.2)
    event_id = deployment.publisher.publish(good_lead)
    deployment.wait_done([event_id])
    assert worker.exit_code is None
