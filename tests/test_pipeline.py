"""The batch processor, called directly: fan-out, permission gating, isolation, idempotent
redelivery, dead letters and transient failures. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from services_ai_plugins.host import Host
from services_ai_plugins.infra.models import DeadLetter, EventRecord, HookResult
from services_ai_plugins.pipeline.processor import ACK, RETRY, EventProcessor, Incoming, backoff
from services_ai_plugins.pipeline.rows import MAX_DEAD_PAYLOAD
from tests.helpers import make_config, manifest_for, write_plugin

RECORDER = """
import json, pathlib
from services_ai_plugins import hookimpl

LOG = pathlib.Path({log!r})

@hookimpl
def lead_created(lead, context):
    with LOG.open("a") as fh:
        fh.write(context["event"]["event_id"] + "\\n")
    return {{"status": "success", "lead": lead["id"], "plugin": context["plugin_id"]}}
"""


def lead(i: int | str, **data: object) -> dict[str, object]:
    return {
        "event_id": f"ev-{i}",
        "type": "lead.created",
        "source": "test",
        "data": {
            "id": f"L{i}",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "notes": "prefers mornings",
            "custom_fields": {"ssn": "078-05-1120"},
            **data,
        },
    }


def add_plugin(host: Host, tmp_path: Path, name: str, main: str, grant: bool = True, **fields: object) -> str:
    folder = write_plugin(tmp_path / name.replace(" ", "_"), manifest_for(name, **fields), main)
    plugin_id = host.registry.install(folder).plugin.id
    if grant:
        for permission in fields.get("permissions", ["lead_access"]):  # type: ignore[union-attr]
            host.registry.grant(plugin_id, permission)
    host.registry.enable(plugin_id)
    return plugin_id


@pytest.fixture
def processor(host: Host) -> Iterator[EventProcessor]:
    runtime = host.runtime
    processor = host.processor
    yield processor
    processor.close()
    runtime.close()


def results(host: Host) -> list[tuple[str, str, str]]:
    with host.db.session() as s:
        return sorted(s.execute(select(HookResult.event_id, HookResult.plugin_id, HookResult.status)).all())


def test_each_permitted_plugin_is_called_once_per_event(
    host: Host, processor: EventProcessor, tmp_path: Path
) -> None:
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    add_plugin(host, tmp_path, "Alpha", RECORDER.format(log=str(log_a)))
    add_plugin(host, tmp_path, "Beta", RECORDER.format(log=str(log_b)))
    report = processor.process([Incoming(lead(i)) for i in range(5)])
    assert {d.action for d in report.dispositions} == {ACK}
    assert report.events == 5
    assert report.calls == 10
    assert results(host) == sorted((f"ev-{i}", p, "success") for i in range(5) for p in ("alpha", "beta"))
    assert log_a.read_text().split() == [f"ev-{i}" for i in range(5)]
    view = host.events.show("ev-3")
    assert view["status"] == "done"
    assert [r["result"]["lead"] for r in view["results"]] == ["L3", "L3"]


def test_a_plugin_without_the_permission_is_never_called(
    host: Host, processor: EventProcessor, tmp_path: Path
) -> None:
    log = tmp_path / "x.log"
    add_plugin(host, tmp_path, "Ungranted", RECORDER.format(log=str(log)), grant=False)
    processor.process([Incoming(lead(1))])
    assert not log.exists()
    assert results(host) == []
    assert host.events.show("ev-1")["results"] == []


def test_redelivery_stores_no_second_row_and_calls_no_plugin_twice(
    host: Host, processor: EventProcessor, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    add_plugin(host, tmp_path, "Once", RECORDER.format(log=str(log)))
    batch = [Incoming(lead(i)) for i in range(3)]
    processor.process(batch)
    processor.process([Incoming(b.body, redelivered=True) for b in batch])
    processor.process([Incoming(lead(1), attempt=2)])  # a retry of a batch that did commit
    assert log.read_text().split() == ["ev-0", "ev-1", "ev-2"]
    with host.db.session() as s:
        assert s.scalar(select(func.count()).select_from(HookResult)) == 3
        assert s.scalar(select(func.count()).select_from(EventRecord)) == 3
        assert s.scalar(select(EventRecord.attempts).where(EventRecord.event_id == "ev-1")) == 3


def test_an_event_published_twice_is_stored_once(
    host: Host, processor: EventProcessor, tmp_path: Path
) -> None:
    """A fresh message is not looked up (that is what keeps the hot path cheap), so a second
    publish of the same event id calls its plugins again, with the same idempotency key; it
    never stores a second row."""
    log = tmp_path / "calls.log"
    add_plugin(host, tmp_path, "Once", RECORDER.format(log=str(log)))
    processor.process([Incoming(lead(1))])
    processor.process([Incoming(lead(1)), Incoming(lead(1)), Incoming(lead(2))])  # twice in a batch too
    assert log.read_text().split() == ["ev-1", "ev-1", "ev-2"]
    assert [(e, s) for e, _, s in results(host)] == [("ev-1", "success"), ("ev-2", "success")]
    with host.db.session() as s:
        assert s.scalar(select(EventRecord.attempts).where(EventRecord.event_id == "ev-1")) == 2


def test_a_plugin_added_later_is_called_on_redelivery_only_for_itself(
    host: Host, processor: EventProcessor, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    add_plugin(host, tmp_path, "First", RECORDER.format(log=str(first)))
    processor.process([Incoming(lead(1))])
    add_plugin(host, tmp_path, "Second", RECORDER.format(log=str(second)))
    processor.process([Incoming(lead(1), redelivered=True)])
    assert first.read_text().split() == ["ev-1"]
    assert second.read_text().split() == ["ev-1"]


MISBEHAVING = {
    "Raiser": "raise RuntimeError(f\"cannot handle {lead['email']} / {lead['name']}\")",
    "Leaker": "raise ValueError(str(lead['custom_fields']['ssn']) + ' ' + lead['notes'])",
    "Sleeper": "import time\n    time.sleep(5)",
    "Not Json": "return {'when': object()}",
    "Huge": "return {'blob': 'x' * 200_000}",
    "Mutator": "lead['email'] = 'stolen'; lead.clear(); context['settings']['x'] = 1\n    return {'ok': True}",
    "Exiter": "raise SystemExit(3)",
}


def test_misbehaving_plugins_never_change_another_plugins_result(tmp_path: Path, database_url: str) -> None:
    host = Host(make_config(tmp_path / "data", database_url, plugin_time_limit=0.3, breaker_threshold=10))
    host.ready()
    for name, body in MISBEHAVING.items():
        main = f"from services_ai_plugins import hookimpl\n\n@hookimpl\ndef lead_created(lead, context):\n    {body}\n"
        add_plugin(host, tmp_path, name, main)
    add_plugin(host, tmp_path, "Good", RECORDER.format(log=str(tmp_path / "good.log")))
    runtime = host.runtime
    report = host.processor.process([Incoming(lead(1)), Incoming(lead(2))])
    runtime.close()
    assert {d.action for d in report.dispositions} == {ACK}
    view = {r["plugin_id"]: r for r in host.events.show("ev-1")["results"]}
    assert view["good"]["status"] == "success"
    assert view["good"]["result"] == {"status": "success", "lead": "L1", "plugin": "good"}
    assert view["mutator"]["status"] == "success"
    assert view["raiser"]["status"] == "error"
    assert (
        view["raiser"]["error"]
        == "RuntimeError: cannot handle [redacted] / [redacted] (at main.py:5 in lead_created)"
    )
    assert view["sleeper"]["status"] == "timeout"
    assert view["sleeper"]["error"] == "ran past its time limit of 0.3s"
    assert view["not-json"]["status"] == "error"
    assert "not JSON-serialisable" in view["not-json"]["error"]
    assert view["huge"]["status"] == "error"
    assert "the limit is 65536" in view["huge"]["error"]
    assert view["leaker"]["error"] == "ValueError: [redacted] [redacted] (at main.py:5 in lead_created)"
    assert view["exiter"]["status"] == "error"
    assert view["exiter"]["error"] == "SystemExit: 3 (at main.py:5 in lead_created)"
    for r in view.values():
        assert "ada@example.com" not in (r["error"] or "")
    assert host.events.show("ev-1")["failures"] == 6
    host.close()


def test_a_plugin_that_keeps_timing_out_is_skipped_by_the_breaker(tmp_path: Path, database_url: str) -> None:
    host = Host(
        make_config(
            tmp_path / "data", database_url, plugin_time_limit=0.1, breaker_threshold=2, breaker_cooldown=60
        )
    )
    host.ready()
    add_plugin(
        host,
        tmp_path,
        "Hang",
        "from services_ai_plugins import hookimpl\nimport time\n\n"
        "@hookimpl\ndef lead_created(lead):\n    time.sleep(3)\n",
    )
    runtime = host.runtime
    host.processor.process([Incoming(lead(i)) for i in range(5)])
    runtime.close()
    statuses = [s for _, _, s in results(host)]
    assert statuses == ["timeout", "timeout", "skipped", "skipped", "skipped"]
    skipped = host.events.show("ev-4")["results"][0]
    assert skipped["error"].startswith(
        "not called: timed out or crashed on its last 2 calls; tried again after "
    )
    assert "services-ai" not in skipped["error"]  # stored data holds no CLI hint
    host.close()


def test_malformed_events_go_to_the_dead_letter_store_and_the_rest_are_processed(
    host: Host, processor: EventProcessor, tmp_path: Path
) -> None:
    add_plugin(host, tmp_path, "Any", RECORDER.format(log=str(tmp_path / "any.log")))
    report = processor.process(
        [
            Incoming(lead(1)),
            Incoming({"type": "lead.created", "event_id": "bad-1", "data": {"id": 5}}),
            Incoming({"type": "lead.exploded", "data": {}}),
            Incoming('{"type": "lead.created", "data": '),
            Incoming(json.dumps(lead(2))),
        ]
    )
    assert {d.action for d in report.dispositions} == {ACK}
    assert (report.events, report.dead) == (2, 3)
    dead = host.events.dead_letters()
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == [
        "event: data.id: input should be a valid string",
        "event: is not valid JSON: Expecting value (line 1, column 34)",
        "event: type: 'lead.exploded' is not an event type (lead.created, booking.created, booking.updated)",
    ]
    assert host.events.show("bad-1")["status"] == "dead"


def test_bodies_that_bypassed_publish_are_held_to_the_same_caps_at_the_worker(
    host: Host, processor: EventProcessor, tmp_path: Path
) -> None:
    """Another client can put any dict on the queue: over the size cap, 100,000 keys, a NUL,
    a number beyond 64 bits. Each is dead-lettered once with the reason, and never stored whole
    or sent to a plugin; the good event beside them is processed."""
    log = tmp_path / "any.log"
    add_plugin(host, tmp_path, "Any", RECORDER.format(log=str(log)))
    hostile = {
        "huge": {"custom_fields": {f"k{i}": "x" * 1100 for i in range(300)}},
        "keys": {"custom_fields": {f"k{i}": i for i in range(100_000)}},
        "nul": {"name": "Ada\x00"},
        "big-int": {"custom_fields": {"n": 2**70}},
    }
    report = processor.process(
        [
            *(
                Incoming({"type": "lead.created", "event_id": f"h-{name}", "data": {"id": "L", **data}})
                for name, data in hostile.items()
            ),
            Incoming(42),  # a task sent with args=[42]
            Incoming(None),  # ... or with no argument
            Incoming(lead(1)),
        ]
    )
    assert {d.action for d in report.dispositions} == {ACK}  # none requeued (was a loop)
    assert (report.events, report.dead) == (1, 6)
    reasons = {d["event_id"]: d["reason"] for d in host.events.dead_letters()}
    assert "limit is 262144" in reasons["h-huge"]
    assert "more than 1000 keys" in reasons["h-keys"]
    assert "NUL character" in reasons["h-nul"]
    assert "number JSON cannot carry" in reasons["h-big-int"]
    assert sorted(d["reason"] for d in host.events.dead_letters() if d["event_id"] is None) == [
        "event: must be a JSON object, not an int",
        "event: must be a JSON object, not nothing",
    ]
    # Kept to fix and replay, but never past the cap (the 100,000 keys were 1.1 MB).
    assert all(len(d["payload"]) <= MAX_DEAD_PAYLOAD for d in host.events.dead_letters())
    assert log.read_text().split() == [lead(1)["event_id"]]  # no plugin saw a hostile one


def test_transient_database_failure_asks_for_a_retry_with_backoff(
    host: Host, processor: EventProcessor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_plugin(host, tmp_path, "Any", RECORDER.format(log=str(tmp_path / "any.log")))

    def down(*_: object, **__: object) -> None:
        raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(processor.store, "write", down)
    report = processor.process([Incoming(lead(1), attempt=2)])
    (disp,) = report.dispositions
    assert (disp.action, disp.attempt) == (RETRY, 3)
    assert 0 <= disp.countdown <= 4
    monkeypatch.undo()
    assert results(host) == []


def test_one_unstorable_event_is_dead_lettered_and_the_batch_survives(
    host: Host, processor: EventProcessor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_plugin(host, tmp_path, "Any", RECORDER.format(log=str(tmp_path / "any.log")))
    real_write = processor.store.write

    def picky(conn: object, events: list, results_: list, dead: list) -> None:
        if any(e["event_id"] == "ev-2" for e in events):
            raise IntegrityError("INSERT", {}, Exception("value too long"))
        real_write(conn, events, results_, dead)

    monkeypatch.setattr(processor.store, "write", picky)
    report = processor.process([Incoming(lead(i)) for i in range(1, 4)])
    assert {d.action for d in report.dispositions} == {ACK}
    assert [e for e, _, _ in results(host)] == ["ev-1", "ev-3"]
    (dead,) = host.events.dead_letters()
    assert dead["stage"] == "store"
    assert dead["event_id"] == "ev-2"
    assert "IntegrityError" in dead["reason"]


def test_booking_updated_gets_the_booking_and_its_previous_state(
    host: Host, processor: EventProcessor, tmp_path: Path
) -> None:
    main = (
        "from services_ai_plugins import hookimpl\n\n"
        "@hookimpl\ndef booking_updated(booking, previous_state, context):\n"
        "    return {'now': booking.status, 'was': previous_state['status'], 'keys': sorted(booking)}\n"
    )
    add_plugin(host, tmp_path, "Watcher", main, hooks=["booking_updated"], permissions=["booking_access"])
    before = {"id": "b1", "starts_at": "2026-05-01T09:00:00Z", "status": "pending"}
    processor.process(
        [
            Incoming(
                {
                    "event_id": "bu-1",
                    "type": "booking.updated",
                    "data": {**before, "status": "confirmed", "previous_state": before},
                }
            )
        ]
    )
    (result,) = host.events.show("bu-1")["results"]
    assert result["result"]["now"] == "confirmed"
    assert result["result"]["was"] == "pending"
    assert "previous_state" not in result["result"]["keys"]


def test_backoff_grows_and_is_capped() -> None:
    assert all(0 <= backoff(1) <= 1 for _ in range(50))
    assert all(0 <= backoff(30) <= 300 for _ in range(50))
    assert max(backoff(6) for _ in range(200)) > 8


def test_events_counts(host: Host, processor: EventProcessor, tmp_path: Path) -> None:
    add_plugin(
        host,
        tmp_path,
        "Raiser",
        "from services_ai_plugins import hookimpl\n\n"
        "@hookimpl\ndef lead_created(lead):\n    if lead['id'] == 'L2':\n        raise ValueError('x')\n",
    )
    processor.process([Incoming(lead(1)), Incoming(lead(2)), Incoming({"type": "nope"})])
    counts = host.events.counts()
    assert (counts["done"], counts["failed"], counts["dead"], counts["pending"]) == (2, 1, 1, 0)
    with host.db.session() as s:
        assert s.scalar(select(func.count()).select_from(DeadLetter)) == 1


def test_uninstall_keeps_results_unless_purged(host: Host, processor: EventProcessor, tmp_path: Path) -> None:
    add_plugin(host, tmp_path, "Keep", RECORDER.format(log=str(tmp_path / "k.log")))
    add_plugin(host, tmp_path, "Purge", RECORDER.format(log=str(tmp_path / "p.log")))
    processor.process([Incoming(lead(1))])
    host.registry.uninstall("keep")
    host.registry.uninstall("purge", purge=True)
    assert results(host) == [("ev-1", "keep", "success")]
