"""The Celery tasks called as functions: what each does with its arguments, including the retry
and dead-letter paths of the event batch task."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from services_ai_plugins.config import reset_config
from services_ai_plugins.host import Host
from services_ai_plugins.pipeline.processor import ACK
from tests.helpers import SAMPLE_PLUGIN, SECRET_KEY
from workers import state, tasks


@pytest.fixture
def worker(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    for name, value in {
        "DATABASE_URL": database_url,
        "SERVICES_AI_DATA_DIR": str(tmp_path / "data"),
        "SERVICES_AI_SECRET_KEY": SECRET_KEY,
        "SERVICES_AI_EVENT_MAX_ATTEMPTS": "3",
        "BROKER_URL": "memory://",
    }.items():
        monkeypatch.setenv(name, value)
    reset_config()
    host = Host().ready()
    host.registry.install(SAMPLE_PLUGIN)
    for permission in ("lead_access", "dashboard_widget", "data_export"):
        host.registry.grant("lead-insights", permission)
    host.registry.enable("lead-insights")
    host.close()
    state.reset()
    current = state.get()
    yield current
    current.close()
    state.reset()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Messages the tasks send (captured instead of going to a broker)."""
    out: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(tasks.process_events, "apply_async", lambda **kw: out.append(("event", kw)))
    monkeypatch.setattr(tasks.refresh_widget, "delay", lambda pid: out.append(("widget", {"plugin_id": pid})))
    return out


def lead(i: int) -> dict[str, Any]:
    return {"event_id": f"t{i}", "type": "lead.created", "data": {"id": f"L{i}", "company": "Acme"}}


def test_process_events_stores_results_and_acknowledges(worker: Host) -> None:
    actions = tasks.process_events([(lead(1), 1, False), (lead(2), 1, False), ({"type": "bad"}, 1, False)])
    assert actions == [ACK, ACK, ACK]
    events = worker.events
    assert events.show("t1")["results"][0]["status"] == "success"
    assert events.counts()["dead"] == 1


def test_a_database_outage_schedules_retries_with_backoff(
    worker: Host, sent: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_: object, **__: object) -> None:
        raise OperationalError("COPY", {}, Exception("connection refused"))

    monkeypatch.setattr(worker.processor.store, "write", down)
    assert tasks.process_events([(lead(1), 1, False), (lead(2), 2, False)]) == [ACK, ACK]
    assert [(kind, kw["args"], kw["kwargs"]) for kind, kw in sent] == [
        ("event", [lead(1)], {"attempt": 2}),
        ("event", [lead(2)], {"attempt": 3}),
    ]
    assert all(0 <= kw["countdown"] <= 4 for _, kw in sent)


def test_an_event_out_of_attempts_goes_to_the_dead_letter_store(
    worker: Host, sent: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = worker.processor.store.write
    calls = {"n": 0}

    def fail_once(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # the batch fails; the dead-letter write that follows succeeds
            raise OperationalError("COPY", {}, Exception("connection refused"))
        real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker.processor.store, "write", fail_once)
    assert tasks.process_events([(lead(1), 3, False)]) == [ACK]
    assert sent == []
    (letter,) = worker.events.dead_letters()
    assert (letter["event_id"], letter["stage"]) == ("t1", "retries")
    assert letter["reason"] == "gave up after 3 attempts: the database kept failing"


def test_widget_tick_queues_the_due_widgets_and_refresh_renders(worker: Host, sent: list) -> None:
    assert tasks.widgets_tick() == 1
    assert sent == [("widget", {"plugin_id": "lead-insights"})]
    assert tasks.refresh_widget("lead-insights") == "ok"
    assert tasks.widgets_tick() == 0  # rendered: not due again until its interval passes
    assert tasks.refresh_widget("not-installed") is None


def test_export_and_replay_tasks(worker: Host) -> None:
    tasks.process_events([(lead(1), 1, False)])
    export_id = worker.exports.create("leads")
    assert tasks.run_export(export_id) == "done"
    assert tasks.replay_plugin("lead-insights", "2000-01-01T00:00:00+00:00", None, False) == {
        "events": 0,
        "success": 0,
        "failed": 0,
    }


def test_a_batch_failing_in_a_way_no_check_foresaw_is_retried_later_then_dead_lettered(
    worker: Host, sent: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (here a NameError) in the host's processing used to requeue the batch at once, to
    fail again at once: thousands of times a minute. Now each event goes again later, with
    backoff, and to the dead-letter store with the reason once out of attempts."""

    def broken(*_: object, **__: object) -> None:
        raise NameError("name 'cpu_seconds' is not defined")

    monkeypatch.setattr(worker.processor, "process", broken)
    assert tasks.process_events([(lead(1), 1, False), (lead(2), 3, False)]) == [ACK, ACK]
    assert [(kw["args"], kw["kwargs"]) for _, kw in sent] == [([lead(1)], {"attempt": 2})]
    assert 0 <= sent[0][1]["countdown"] <= 1
    (letter,) = worker.events.dead_letters()
    assert (letter["event_id"], letter["stage"]) == ("t2", "retries")
    assert letter["reason"] == (
        "gave up after 3 attempts: the batch failed: NameError: name 'cpu_seconds' is not defined"
    )
