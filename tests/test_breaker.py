"""Circuit breakers: a plugin that keeps timing out is not called; one process's breaker is
adopted by the others through the database."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services_ai_plugins.calling.breaker import Breakers, Trip
from services_ai_plugins.host import Host
from services_ai_plugins.pipeline.processor import EventProcessor, Incoming
from tests.helpers import make_config, manifest_for, write_plugin


def test_opens_after_the_threshold_and_a_success_closes_it() -> None:
    b = Breakers(threshold=2, cooldown=60)
    b.record("p", "timeout")
    assert b.blocked_until("p") is None
    b.record("p", "success")  # not consecutive any more
    b.record("p", "timeout")
    assert b.blocked_until("p") is None
    b.record("p", "timeout")
    until = b.blocked_until("p")
    assert until is not None
    assert timedelta(seconds=55) < until - datetime.now(UTC) <= timedelta(seconds=60)
    assert [t.plugin_id for t in b.take_changes()] == ["p"]
    assert b.take_changes() == []


def test_a_failed_probe_doubles_the_cooldown() -> None:
    b = Breakers(threshold=1, cooldown=10)
    b.record("p", "timeout")
    b.adopt([Trip("p", datetime.now(UTC) - timedelta(seconds=1), 10)])  # later wins: no change
    b._states["p"].open_until = datetime.now(UTC) - timedelta(seconds=1)  # the cool-down passed
    assert b.blocked_until("p") is None  # half-open: the next call is the probe
    b.record("p", "timeout")
    (trip,) = [t for t in b.take_changes() if t.cooldown == 20]
    assert trip.open_until is not None
    b.record("p", "success")
    assert b.take_changes() == [Trip("p", None, 0.0)]
    assert b.blocked_until("p") is None


def test_adopting_a_shared_breaker() -> None:
    b = Breakers(threshold=3, cooldown=30)
    until = datetime.now(UTC) + timedelta(seconds=30)
    b.adopt([Trip("p", until, 30), Trip("q", None, 0)])
    assert b.blocked_until("p") == until
    assert b.blocked_until("q") is None
    assert b.open_plugins() == ["p"]


def _two_processes(
    tmp_path: Path, database_url: str, name: str, source: str, **settings: float
) -> tuple[Host, EventProcessor, EventProcessor]:
    """A host with one permitted, enabled plugin, and two event processors (two worker
    processes) on its database."""
    config = make_config(
        tmp_path / "data", database_url, plugin_time_limit=0.1, registry_poll_seconds=0.01, **settings
    )
    host = Host(config).ready()
    plugin_id = host.registry.install(write_plugin(tmp_path / "plugin", manifest_for(name), source)).plugin.id
    host.registry.grant(plugin_id, "lead_access")
    host.registry.enable(plugin_id)
    # Each worker process has a host of its own (its runtime, its breakers).
    first = Host(config).processor
    second = Host(config).processor
    return host, first, second


def test_a_breaker_opened_in_one_process_is_adopted_by_another(tmp_path: Path, database_url: str) -> None:
    host, first, second = _two_processes(
        tmp_path,
        database_url,
        "Hang",
        "from services_ai_plugins import hookimpl\nimport time\n\n"
        "@hookimpl\ndef lead_created(lead):\n    time.sleep(3)\n",
        breaker_threshold=2,
        breaker_cooldown=120,
    )
    second.process([Incoming({"type": "lead.created", "event_id": "warm", "data": {"id": "W"}})])  # 1 timeout
    first.process(
        [Incoming({"type": "lead.created", "event_id": f"a{i}", "data": {"id": "L"}}) for i in range(2)]
    )
    assert "hang" in host.status.collect()["breakers_open"]
    second.process([Incoming({"type": "lead.created", "event_id": "b", "data": {"id": "L"}})])
    (result,) = host.events.show("b")["results"]
    assert result["status"] == "skipped"  # adopted: not called, no time limit spent
    assert result["duration_ms"] == 0.0
    for processor in (first, second):
        processor.close()
        processor.runtime.close()
    host.close()


def test_a_claimed_probe_is_not_made_twice() -> None:
    b = Breakers(threshold=1, cooldown=10)
    b.record("p", "timeout")
    b._states["p"].open_until = datetime.now(UTC) - timedelta(seconds=1)  # the cool-down passed
    (due,) = b.due_probes()
    assert due.plugin_id == "p" and due.cooldown == 10
    b.claimed("p")
    assert b.due_probes() == []  # claimed: not claimed again
    later = datetime.now(UTC) + timedelta(seconds=30)
    b.adopt([Trip("p", later, 10)])  # our own hold, read back from the database
    assert b.blocked_until("p") is None  # the probe still goes through here


def test_a_breaker_closed_elsewhere_closes_here() -> None:
    b = Breakers(threshold=1, cooldown=60)
    until = datetime.now(UTC) + timedelta(seconds=60)
    b.adopt([Trip("p", until, 60), Trip("q", until, 60)])
    b.adopt([Trip("q", until, 60)])  # a partial view closes nothing
    assert b.open_plugins() == ["p", "q"]
    b.adopt([Trip("q", until, 60)], complete=True)  # every open breaker: p's probe succeeded
    assert b.open_plugins() == ["q"]
    assert b.blocked_until("p") is None


def test_one_process_probes_after_the_cooldown_the_others_keep_skipping(
    tmp_path: Path, database_url: str
) -> None:
    hanging = tmp_path / "hanging"
    hanging.write_text("yes")
    host, first, second = _two_processes(
        tmp_path,
        database_url,
        "Flaky",
        "from pathlib import Path\nimport time\nfrom services_ai_plugins import hookimpl\n\n"
        "@hookimpl\ndef lead_created(lead):\n"
        f"    if Path({str(hanging)!r}).exists():\n        time.sleep(3)\n"
        "    return {'ok': True}\n",
        breaker_threshold=1,
        breaker_cooldown=0.3,
    )
    events = host.events

    def lead(event_id: str) -> list[Incoming]:
        return [Incoming({"type": "lead.created", "event_id": event_id, "data": {"id": "L"}})]

    def status(event_id: str) -> str:
        (result,) = events.show(event_id)["results"]
        return str(result["status"])

    first.process(lead("trip"))
    second.process(lead("adopted"))
    assert (status("trip"), status("adopted")) == ("timeout", "skipped")
    time.sleep(0.35)  # both processes' breakers are past their cool-down
    with first.store.connection() as conn:
        first._sync_breakers(conn)  # the first process's next batch claims the probe ...
    second.process(lead("held"))  # ... so the second, whose cool-down passed too, still skips
    assert status("held") == "skipped"
    first.process(lead("probe"))
    assert status("probe") == "timeout"  # one probe in the deployment, and it timed out
    assert "flaky" in host.status.collect()["breakers_open"]  # open again, for twice as long

    hanging.unlink()  # the plugin recovers
    time.sleep(0.65)
    second.process(lead("recovered"))  # this time the second process claims and makes the probe
    assert status("recovered") == "success"
    assert host.status.collect()["breakers_open"] == {}  # closed for everyone
    first.process(lead("after"))
    assert status("after") == "success"
    for processor in (first, second):
        processor.close()
        processor.runtime.close()
    host.close()
