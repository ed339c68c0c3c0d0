"""Circuit breakers: a plugin that keeps timing out is not called; one process's breaker is
adopted by the others through the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from services_ai_plugins.breaker import Breakers, Trip
from services_ai_plugins.events import EventService
from services_ai_plugins.host import Host
from services_ai_plugins.pipeline import EventProcessor, Incoming
from services_ai_plugins.runtime import PluginRuntime
from services_ai_plugins.status import collect
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


def test_a_breaker_opened_in_one_process_is_adopted_by_another(tmp_path: Path, database_url: str) -> None:
    config = make_config(
        tmp_path / "data",
        database_url,
        plugin_time_limit=0.1,
        breaker_threshold=2,
        breaker_cooldown=120,
        registry_poll_seconds=0.01,
    )
    host = Host(config).ready()
    folder = write_plugin(
        tmp_path / "hang",
        manifest_for("Hang"),
        "from services_ai_plugins import hookimpl\nimport time\n\n"
        "@hookimpl\ndef lead_created(lead):\n    time.sleep(3)\n",
    )
    host.registry.install(folder)
    host.registry.grant("hang", "lead_access")
    host.registry.enable("hang")
    first = EventProcessor(host, PluginRuntime(host.registry, poll_seconds=0))
    second = EventProcessor(host, PluginRuntime(host.registry, poll_seconds=0))
    second.process([Incoming({"type": "lead.created", "event_id": "warm", "data": {"id": "W"}})])  # 1 timeout
    first.process(
        [Incoming({"type": "lead.created", "event_id": f"a{i}", "data": {"id": "L"}}) for i in range(2)]
    )
    assert "hang" in collect(host)["breakers_open"]
    second.process([Incoming({"type": "lead.created", "event_id": "b", "data": {"id": "L"}})])
    (result,) = EventService(host).show("b")["results"]
    assert result["status"] == "skipped"  # adopted: not called, no time limit spent
    assert result["duration_ms"] == 0.0
    for processor in (first, second):
        processor.close()
        processor.runtime.close()
    host.close()
