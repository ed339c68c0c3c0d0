"""Events published over HTTP (``POST /api/v1/events`` on the real ``services-ai web``) and
processed by a real worker on Redis and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services_ai_plugins.infra.broker import QUEUES
from tests.integration import (
    COUNTER_PERMISSIONS,
    Deployment,
    MakePlugin,
    call_log,
    calls,
    lead,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_one_event_id_posted_twice_is_one_event(deployment: Deployment, make_plugin: MakePlugin) -> None:
    """Proves: the web app answers 202 with the event id only once the broker has the message;
    a publisher retrying the same ``event_id`` gets the same id back and the deployment holds
    one event with one result per plugin; a body that fails validation is 422 with the field
    named and reaches no worker; a token of another scope is 403."""
    log = call_log("http")
    plugin = deployment.install(
        make_plugin("http-counter", log.source(), permissions=COUNTER_PERMISSIONS), grants=COUNTER_PERMISSIONS
    )
    publish_token = deployment.cli("token", "create", "--scope", "publish", "--name", "it").stdout.strip()
    dashboard_token = deployment.cli("token", "create", "--scope", "dashboard").stdout.strip()
    web = deployment.start_web()
    deployment.start_worker("ingest", pool="solo")

    event_id = f"evt-{uuid.uuid4().hex[:12]}"
    body = {**lead(1), "event_id": event_id}
    with httpx.Client(base_url=web.url, timeout=30) as client:
        auth = {"Authorization": f"Bearer {publish_token}"}
        answers = [client.post("/api/v1/events", json=body, headers=auth) for _ in range(2)]
        assert [(a.status_code, a.json()) for a in answers] == [(202, {"event_id": event_id})] * 2

        bad = client.post("/api/v1/events", json={"type": "lead.created", "data": {"id": 5}}, headers=auth)
        assert bad.status_code == 422, bad.text
        assert "data" in bad.json()["detail"] or "data" in bad.text
        wrong_scope = client.post(
            "/api/v1/events", json=body, headers={"Authorization": f"Bearer {dashboard_token}"}
        )
        assert wrong_scope.status_code == 403, wrong_scope.text

    deployment.wait_done([event_id])
    # Both messages are consumed and acknowledged (nothing queued or in flight).
    wait_for(
        lambda: deployment.broker_state() == {"queued": dict.fromkeys(QUEUES, 0), "unacked": 0},
        "the broker to hold nothing",
        on_timeout=lambda: str(deployment.broker_state()),
        timeout=60,
    )
    events = deployment.host.events.recent(limit=50)
    assert [e["event_id"] for e in events] == [event_id]
    rows = deployment.results(plugin)
    assert [(r.event_id, r.status) for r in rows] == [(event_id, "success")]
    # Both messages reached the worker: the plugin may be called again for the second (its
    # context's idempotency_key is the same), but its result is stored once.
    assert 1 <= calls(log)[event_id] <= 2
