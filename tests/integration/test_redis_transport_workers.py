"""Real Celery workers on the atomic-fetch Redis transport: the prefork and solo pools, every
queue (events first, where the transport blocks, or last, where it polls), events of two
priorities consumed by the batching consumer and acknowledged in bulk, and a task on each other
queue; at the end nothing is left queued or unacknowledged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from services_ai_plugins.infra.broker import (
    EVENT_TASK,
    EVENTS_QUEUE,
    EXPORT_TASK,
    EXPORTS_QUEUE,
    LIFECYCLE_QUEUE,
    REPLAY_TASK,
    WIDGET_REFRESH_TASK,
    WIDGETS_QUEUE,
)
from services_ai_plugins.publisher import validate
from tests.helpers import SAMPLE_PLUGIN
from tests.integration import Deployment, lead, wait_for

pytestmark = pytest.mark.integration

EVENTS = 300
SEP = "\x06\x16"  # kombu's priority sub-queue separator
ORDERS = {
    "prefork": ",".join((EVENTS_QUEUE, WIDGETS_QUEUE, EXPORTS_QUEUE, LIFECYCLE_QUEUE)),
    "solo": ",".join((LIFECYCLE_QUEUE, EXPORTS_QUEUE, WIDGETS_QUEUE, EVENTS_QUEUE)),
}


@pytest.mark.parametrize(("pool", "queues"), list(ORDERS.items()))
def test_a_worker_consumes_every_queue_and_both_priorities(
    deployment: Deployment, redis_client: redis.Redis, pool: str, queues: str
) -> None:
    """Proves: with the pool and queue order given, every event (a third sent with a low
    priority, kept in kombu's priority sub-queue) is stored done, an export, a widget refresh
    and a replay sent to their own queues all run, and the broker ends empty: every message
    was acknowledged (events in bulk, by the batching consumer)."""
    plugin = deployment.install(
        SAMPLE_PLUGIN, grants=("lead_access", "booking_access", "dashboard_widget", "data_export")
    )
    app = deployment.publisher.app
    ids = []
    for i in range(EVENTS):
        body = validate(lead(i)).model_dump(mode="json")
        app.send_task(
            EVENT_TASK, args=[body], queue=EVENTS_QUEUE, task_id=body["event_id"], priority=9 if i % 3 else 0
        )
        ids.append(body["event_id"])
    assert redis_client.llen(f"{EVENTS_QUEUE}{SEP}9") == EVENTS * 2 // 3
    exports, widgets = deployment.host.exports, deployment.host.widgets
    export_id = exports.create("leads")
    app.send_task(EXPORT_TASK, args=[export_id], queue=EXPORTS_QUEUE)
    app.send_task(WIDGET_REFRESH_TASK, args=[plugin], queue=WIDGETS_QUEUE)
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    app.send_task(REPLAY_TASK, args=[plugin, since, None, False], queue=LIFECYCLE_QUEUE)

    worker = deployment.start_worker(pool, pool=pool, queues=queues)
    deployment.wait_done(ids)
    wait_for(
        lambda: exports.get(export_id)["status"] not in ("pending", "running"),
        "the export to run",
        workers=[worker],
    )
    assert exports.get(export_id)["status"] == "done"
    wait_for(
        lambda: any(s["plugin_id"] == plugin for s in widgets.snapshots()),
        "the widget snapshot",
        workers=[worker],
    )

    def empty() -> bool:
        keys = [q + suffix for q in queues.split(",") for suffix in ("", f"{SEP}3", f"{SEP}6", f"{SEP}9")]
        return sum(redis_client.llen(k) for k in keys) == 0 and redis_client.hlen("unacked") == 0

    wait_for(
        empty,
        "every message to be acknowledged",
        workers=[worker],
        on_timeout=lambda: str(deployment.broker_state()),
    )
    assert redis_client.zcard("unacked_index") == 0
