"""Plugins that fail in the ways a sandbox must survive, beside one that behaves, on a real
worker (default isolation): they hang in C, catch the time-limit signal and carry on, call
``os._exit``, allocate until they die, return 50 MB, mutate their input. The good plugin's
results are exactly what they would be alone, each failure is stored with its reason and without
the lead's personal data, and the worker stays up. (Raising, sleeping, non-JSON and 1 MB returns:
tests/integration/test_misbehaving_plugins.py.)"""

from __future__ import annotations

import pytest

from tests.integration import Deployment, MakePlugin, lead

pytestmark = pytest.mark.integration

EVENTS = 8
TIME_LIMIT = 0.5

PLUGINS = {
    "good": """
        from services_ai_plugins import hookimpl

        @hookimpl
        def lead_created(lead, context):
            return {"status": "success", "email": lead["email"], "fields": lead["custom_fields"]}
    """,
    "c-hang": """
        from services_ai_plugins import hookimpl

        @hookimpl
        def lead_created(lead, context):
            sum(range(10**11))  # in C: no signal handler runs until it returns
    """,
    "alarm-eater": """
        import signal, time
        from services_ai_plugins import hookimpl

        @hookimpl
        def lead_created(lead, context):
            signal.signal(signal.SIGALRM, lambda *a: None)  # swallow the time limit
            end = time.monotonic() + 20
            while time.monotonic() < end:
                try:
                    time.sleep(0.05)
                except BaseException:
                    pass
            return {"status": "success"}
    """,
    "exiter": """
        import os
        from services_ai_plugins import hookimpl

        @hookimpl
        def lead_created(lead, context):
            os._exit(7)
    """,
    "glutton": """
        from services_ai_plugins import hookimpl

        @hookimpl
        def lead_created(lead, context):
            hoard = []
            while True:
                hoard.append(bytearray(50 * 1024 * 1024))
    """,
    "flood": """
        from services_ai_plugins import hookimpl

        @hookimpl
        def lead_created(lead, context):
            return {"status": "success", "who": lead["email"], "blob": "x" * (50 * 1024 * 1024)}
    """,
    "mutator": """
        from services_ai_plugins import hookimpl

        @hookimpl
        def lead_created(lead, context):
            lead["email"] = "hijacked@example.com"
            lead["custom_fields"]["planted"] = True
            context["settings"]["x"] = 1
            return {"status": "success"}
    """,
}


def test_plugins_failing_every_way_change_nothing_for_others(
    deployment: Deployment, make_plugin: MakePlugin
) -> None:
    for plugin_id, main in PLUGINS.items():
        deployment.install(make_plugin(plugin_id, main), grants=("lead_access",))
    worker = deployment.start_worker(
        "faults",
        SERVICES_AI_PLUGIN_TIME_LIMIT=str(TIME_LIMIT),
        SERVICES_AI_BREAKER_COOLDOWN="600",
        SERVICES_AI_QUARANTINE_THRESHOLD="100",  # every event reaches every plugin's sandbox
    )
    events = [lead(i, custom_fields={"tier": i}) for i in range(EVENTS)]
    ids = deployment.publish_all(events)
    deployment.wait_done(ids, timeout=300)
    assert worker.exit_code is None

    rows = {(r.event_id, r.plugin_id): r for r in deployment.results(event_ids=ids)}
    assert len(rows) == EVENTS * len(PLUGINS), "a plugin has no result for some event"
    statuses: dict[str, set[str]] = {p: set() for p in PLUGINS}
    for event_id, event in zip(ids, events, strict=True):
        good = rows[(event_id, "good")]
        assert good.status == "success" and good.result == {
            "status": "success",
            "email": event["data"]["email"],  # not the mutator's
            "fields": event["data"]["custom_fields"],
        }
        personal = [event["data"][k] for k in ("name", "email", "phone")]
        for plugin_id in PLUGINS:
            row = rows[(event_id, plugin_id)]
            statuses[plugin_id].add(row.status)
            if plugin_id in ("good", "mutator"):
                continue
            assert row.error and "\n" not in row.error, (plugin_id, row.error)
            assert not [v for v in personal if v in row.error], (plugin_id, row.error)
    print(f"\nstatuses: { {p: sorted(s) for p, s in statuses.items()} }")
    assert statuses["mutator"] == {"success"}
    assert statuses["c-hang"] <= {"timeout", "skipped"} and "timeout" in statuses["c-hang"]
    assert statuses["alarm-eater"] <= {"timeout", "skipped"} and "timeout" in statuses["alarm-eater"]
    assert statuses["exiter"] <= {"crashed", "skipped"} and "crashed" in statuses["exiter"]
    assert statuses["glutton"] <= {"error", "crashed", "timeout", "skipped"}  # MemoryError, or the clock
    assert statuses["flood"] <= {"error", "crashed", "skipped"}
    flood = next(rows[(e, "flood")] for e in ids if rows[(e, "flood")].status != "skipped")
    assert "limit" in flood.error or "cap" in flood.error or "over" in flood.error, flood.error
