"""End to end on Redis and PostgreSQL: publisher -> broker -> a real worker -> stored results,
read back through the service layer and through the real ``services-ai`` command."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest

from services_ai_plugins.infra.models import HookResult
from tests.helpers import SAMPLE_PLUGIN
from tests.integration import HOOK_OF, Deployment, MakePlugin, mixed_events

pytestmark = pytest.mark.integration

EVENTS = 200

# Declares lead_access and implements lead_created, but is never granted the permission.
NOSY = """
from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    return {"status": "success", "saw": lead["email"]}
"""


def test_mixed_events_reach_granted_plugins_once_and_never_ungranted_ones(
    deployment: Deployment, make_plugin: MakePlugin
) -> None:
    """Proves: every one of 200 mixed lead/booking events is processed and stored ``done``;
    each has exactly one result, from the granted sample plugin, for the event's own hook,
    with status success; an enabled plugin lacking its permission is never called (and is
    called once granted, so it was the permission that kept it out); ``services-ai events
    show --json`` and ``services-ai status --json`` report the same state."""
    sample = deployment.install(SAMPLE_PLUGIN, grants=("lead_access", "booking_access"))
    nosy = deployment.install(make_plugin("nosy", NOSY), grants=())
    deployment.start_worker("solo")

    events = mixed_events(EVENTS)
    ids = deployment.publish_all(events)
    deployment.wait_done(ids)

    by_event: dict[str, list[HookResult]] = defaultdict(list)
    for row in deployment.results():
        by_event[row.event_id].append(row)
    assert set(by_event) == set(ids)
    for event_id, event in zip(ids, events, strict=True):
        rows = by_event[event_id]
        assert len(rows) == 1, f"{event_id}: {[(r.plugin_id, r.hook) for r in rows]}"
        row = rows[0]
        assert (row.plugin_id, row.hook, row.status, row.error) == (
            sample,
            HOOK_OF[event["type"]],
            "success",
            None,
        )
        assert row.result["status"] == "success"
    assert deployment.results(nosy) == [], "a plugin without lead_access was called"

    # The CLI shows an event with the result of each plugin called for it. Event 3 is a
    # booking.updated: the plugin saw the previous state and reported the change.
    shown = json.loads(deployment.cli("events", "show", ids[3], "--json").stdout)
    assert (shown["event_id"], shown["type"], shown["status"], shown["failures"]) == (
        ids[3],
        "booking.updated",
        "done",
        0,
    )
    assert [{k: r[k] for k in ("plugin_id", "hook", "status", "error")} for r in shown["results"]] == [
        {"plugin_id": sample, "hook": "booking_updated", "status": "success", "error": None}
    ]
    assert shown["results"][0]["result"]["changes"] == ["status: pending -> confirmed"]
    lead_view = json.loads(deployment.cli("events", "show", ids[0], "--json").stdout)
    assert lead_view["results"][0]["hook"] == "lead_created"
    assert isinstance(lead_view["results"][0]["result"]["score"], int)

    status = json.loads(deployment.cli("status", "--json").stdout)
    assert status["events"] == {"total": EVENTS, "pending": 0, "done": EVENTS, "failed": 0, "dead": 0}
    assert status["queues"]["events"] == 0
    assert status["results"] == {"success": EVENTS}
    assert status["plugins"] == {"installed": 2, "enabled": 2, "disabled": {}, "problems": {}}
    # Real workers run plugins in the default isolation: a sandbox process per plugin.
    assert status["isolation"]["mode"] == "process"
    assert any(p.startswith("no network") for p in status["isolation"]["active"])

    # Granting the permission is all it took: the same plugin is now called.
    deployment.host.registry.grant(nosy, "lead_access", actor="integration-test")
    deployment.probe(nosy, called=True, since=time.monotonic())
