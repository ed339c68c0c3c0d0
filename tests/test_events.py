"""Stored events: listing, showing, dead letters and their replay, and backfilling one plugin."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services_ai_plugins.errors import NotFoundError, PluginStateError
from services_ai_plugins.host import Host
from services_ai_plugins.pipeline.processor import Incoming
from tests.helpers import manifest_for, write_plugin

COUNTER = """
import pathlib
from services_ai_plugins import hookimpl
LOG = pathlib.Path({log!r})

@hookimpl
def lead_created(lead, context):
    with LOG.open("a") as fh:
        fh.write(lead["id"] + "\\n")
    if lead.get("notes") == "fail":
        raise RuntimeError("cannot score " + lead["name"])
    return {{"status": "success", "replay": bool(context["event"].get("replay"))}}
"""


def _lead(i: int, day: int, **extra: object) -> Incoming:
    return Incoming(
        {
            "event_id": f"e{i}",
            "type": "lead.created",
            "occurred_at": f"2026-02-{day:02d}T12:00:00Z",
            "data": {"id": f"L{i}", "name": "Ada Lovelace", **extra},
        }
    )


def _plugin(host: Host, tmp_path: Path, name: str) -> Path:
    log = tmp_path / f"{name}.log"
    folder = write_plugin(tmp_path / name, manifest_for(name), COUNTER.format(log=str(log)))
    host.registry.install(folder)
    return log


def test_list_and_show(host: Host, tmp_path: Path) -> None:
    _plugin(host, tmp_path, "Alpha")
    host.registry.grant("alpha", "lead_access")
    host.registry.enable("alpha")
    runtime = host.runtime
    host.processor.process([_lead(1, 1), _lead(2, 2, notes="fail")])
    runtime.close()
    service = host.events
    assert [e["event_id"] for e in service.recent()] in (["e1", "e2"], ["e2", "e1"])
    assert [e["event_id"] for e in service.recent(status="failed")] == ["e2"]
    shown = service.show("e2")
    assert shown["status"] == "done"
    assert shown["failures"] == 1
    # The plugin's own frame, with the personal data in its source line redacted too.
    (frame,) = shown["results"][0]["traceback"]
    assert (frame["file"], frame["line"], frame["function"]) == ("main.py", 11, "lead_created")
    assert (
        shown["results"][0]["error"]
        == "RuntimeError: cannot score [redacted] (at main.py:11 in lead_created)"
    )
    with pytest.raises(NotFoundError, match="event nope not found"):
        service.show("nope")


def test_backfill_calls_a_plugin_for_what_it_missed_once(host: Host, tmp_path: Path) -> None:
    first = _plugin(host, tmp_path, "First")
    host.registry.grant("first", "lead_access")
    host.registry.enable("first")
    runtime = host.runtime
    host.processor.process([_lead(1, 1), _lead(2, 5), _lead(3, 9, notes="fail")])
    late = _plugin(host, tmp_path, "Late")
    host.registry.grant("late", "lead_access")
    host.registry.enable("late")
    service = host.events
    since = datetime(2026, 2, 3, tzinfo=UTC)
    assert host.backfill.run("late", since) == {"events": 2, "success": 1, "failed": 1}
    assert late.read_text().split() == ["L2", "L3"]
    assert host.backfill.run("late", since) == {"events": 0, "success": 0, "failed": 0}
    # --failed re-runs what failed, in place (one row, attempts counted).
    assert host.backfill.run("late", since, include_failed=True)["events"] == 1
    results = {r["plugin_id"]: r for r in service.show("e3")["results"]}
    assert results["late"]["attempts"] == 2
    assert results["late"]["error"] == "RuntimeError: cannot score [redacted] (at main.py:11 in lead_created)"
    assert service.show("e2")["results"][1]["result"] == {"status": "success", "replay": True}
    assert first.read_text().split() == ["L1", "L2", "L3"]  # the other plugin was not called
    runtime.close()


def test_backfill_of_a_plugin_that_may_not_be_called_is_refused(host: Host, tmp_path: Path) -> None:
    _plugin(host, tmp_path, "Off")
    runtime = host.runtime
    with pytest.raises(PluginStateError, match="is not enabled with a permission"):
        host.backfill.run("off", datetime(2026, 1, 1, tzinfo=UTC))
    runtime.close()


def test_dead_letters_replay(host: Host) -> None:
    runtime = host.runtime
    host.processor.process(
        [Incoming({"type": "lead.created", "data": {"id": 7}}), Incoming('{"type": "lead.created"} trailing')]
    )
    runtime.close()
    service = host.events
    wrong_type, garbage = sorted(service.dead_letters(), key=lambda d: d["id"])
    assert wrong_type["reason"] == "event: data.id: input should be a valid string"
    published: list[dict] = []

    def publish(event: dict) -> str:
        published.append(event)
        return "new-id"

    results = service.replay_dead(None, publish)
    assert results == [
        (wrong_type["id"], "new-id", None),
        (garbage["id"], None, "dead letter: is not valid JSON: Extra data (line 1, column 26)"),
    ]
    assert published == [{"type": "lead.created", "data": {"id": 7}}]
    assert [d["id"] for d in service.dead_letters()] == [garbage["id"]]  # the unfixable one stays
    assert len(service.dead_letters(include_replayed=True)) == 2
    assert service.replay_dead([wrong_type["id"]], publish) == [(wrong_type["id"], None, "already replayed")]
    with pytest.raises(NotFoundError, match="dead letter 999 not found"):
        service.replay_dead([999], publish)
