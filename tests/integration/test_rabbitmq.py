"""The same publisher and worker code with RabbitMQ as the broker (``BROKER_URL=amqp://...``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import SAMPLE_PLUGIN
from tests.integration import (
    COUNTER_PERMISSIONS,
    HOOK_OF,
    Deployment,
    MakePlugin,
    call_log,
    calls,
    lead,
    mixed_events,
    wait_for,
)

pytestmark = pytest.mark.integration

EVENTS = 20
KILL_EVENTS = 600


def test_events_flow_through_rabbitmq(rabbit_deployment: Deployment) -> None:
    """Proves: with ``BROKER_URL`` pointing at RabbitMQ and nothing else changed, 20 mixed
    events published with the Publisher (publisher confirms on) are consumed by a real worker
    and each gets its one success result; the queue is left empty (``status`` asks RabbitMQ)."""
    deployment = rabbit_deployment
    sample = deployment.install(SAMPLE_PLUGIN, grants=("lead_access", "booking_access"))
    deployment.start_worker("rabbit")

    events = mixed_events(EVENTS)
    ids = deployment.publish_all(events)
    deployment.wait_done(ids)

    rows = {r.event_id: r for r in deployment.results(sample, ids)}
    assert len(deployment.results(event_ids=ids)) == EVENTS
    for event_id, event in zip(ids, events, strict=True):
        assert (rows[event_id].hook, rows[event_id].status) == (HOOK_OF[event["type"]], "success")

    status = json.loads(deployment.cli("status", "--json").stdout)
    assert status["broker"]["ok"] is True
    assert status["broker"]["url"].startswith("amqp://")
    assert status["events"]["done"] == EVENTS
    assert status["queues"]["events"] == 0


def test_sigkill_loses_nothing_on_rabbitmq(
    rabbit_deployment: Deployment, make_plugin: MakePlugin, tmp_path: Path
) -> None:
    """Proves: on RabbitMQ, a worker's process group killed with SIGKILL at an arbitrary moment
    mid-run (no care taken about messages in transit: the broker itself tracks what it
    delivered and requeues it when the connection drops) loses nothing once a fresh worker
    runs: every event ends ``done`` with one result, and the events committed before the kill
    are not called again."""
    deployment = rabbit_deployment
    log = call_log("counter")
    counter = deployment.install(
        make_plugin("counter", log.source(0.005), permissions=COUNTER_PERMISSIONS), grants=COUNTER_PERMISSIONS
    )
    ids = deployment.publish_all(lead(i) for i in range(KILL_EVENTS))
    first = deployment.start_worker("doomed", wait=False)
    wait_for(
        lambda: len(deployment.results(counter)) >= 100,
        "the first worker to commit some results",
        interval=0.05,
        workers=[first],
    )
    first.kill()
    deployment.wait_disconnected(first)
    committed = {r.event_id for r in deployment.results(counter)}
    assert 0 < len(committed) < KILL_EVENTS, f"the kill was not mid-run: {len(committed)} committed"

    deployment.start_worker("fresh")
    deployment.wait_done(ids)
    assert sorted(r.event_id for r in deployment.results(counter)) == sorted(ids)
    counted = calls(log)
    assert set(counted) == set(ids)
    again = {e: n for e, n in counted.items() if e in committed and n != 1}
    assert not again, f"called again for events committed before the kill: {again}"
