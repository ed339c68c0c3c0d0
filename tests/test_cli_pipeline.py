"""The pipeline's commands: publish, events, status, widgets, export, dlq, replay. The broker is
the embedded one in the test's data folder; the batch processor is called directly on what was
published (real workers are covered by tests/integration and tests/test_embedded_broker.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from services_ai_plugins.cli import cli
from services_ai_plugins.config import get_config, reset_config
from services_ai_plugins.host import Host
from services_ai_plugins.infra.broker import connection
from services_ai_plugins.pipeline.processor import Incoming
from tests.helpers import SAMPLE_PLUGIN, SECRET_KEY


@pytest.fixture
def env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SERVICES_AI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SERVICES_AI_SECRET_KEY", SECRET_KEY)
    reset_config()
    run("db", "upgrade")
    run("plugin", "install", str(SAMPLE_PLUGIN))
    for permission in ("lead_access", "booking_access", "dashboard_widget", "data_export"):
        run("plugin", "grant", "lead-insights", permission)
    run("plugin", "enable", "lead-insights")
    return tmp_path


def run(*args: str, ok: bool = True, stdin: str | None = None) -> tuple[int, str, str]:
    reset_config()
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.exit_code, result.stdout, result.stderr


def _drain() -> list[object]:
    reset_config()
    bodies = []
    with connection(get_config()) as conn:
        queue = conn.SimpleQueue("events")
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                break
            bodies.append(message.decode()[0][0])
            message.ack()
        queue.close()
    return bodies


def _work() -> None:
    """What a worker does with the queued messages."""
    reset_config()
    host = Host().ready()
    runtime = host.runtime
    host.processor.process([Incoming(body) for body in _drain()])
    runtime.close()
    host.close()


def test_publish_prints_the_event_id_alone_and_events_show_has_the_results(env: Path) -> None:
    _, out, _ = run(
        "publish", "lead-created", "--data", '{"id": "L1", "email": "a@acme.io", "company": "Acme"}'
    )
    event_id = out.strip()
    assert out == event_id + "\n"
    assert len(event_id) == 36
    (env / "booking.json").write_text(json.dumps({"id": "B1", "starts_at": "2026-05-01T10:00:00+02:00"}))
    run("publish", "booking-created", "--data", f"@{env / 'booking.json'}", "--event-id", "bk-1")
    run(
        "publish",
        "booking-updated",
        "--data",
        "-",
        stdin=json.dumps(
            {
                "id": "B1",
                "starts_at": "2026-05-01T10:00:00+02:00",
                "status": "confirmed",
                "previous_state": {"id": "B1", "starts_at": "2026-05-01T10:00:00+02:00", "status": "pending"},
            }
        ),
    )
    code, _, err = run("events", "show", event_id, "--json", ok=False)
    assert code == 4
    assert "not found (not yet taken by a worker" in err
    _work()
    shown = json.loads(run("events", "show", event_id, "--json")[1])
    assert shown["event_id"] == event_id
    assert shown["type"] == "lead.created"
    (result,) = shown["results"]
    assert (result["plugin_id"], result["hook"], result["status"], result["error"]) == (
        "lead-insights",
        "lead_created",
        "success",
        None,
    )
    assert result["result"]["tier"] in ("hot", "warm", "cold")
    assert json.loads(run("events", "show", "bk-1", "--json")[1])["results"][0]["hook"] == "booking_created"
    listed = json.loads(run("events", "list", "--json")[1])
    assert sorted(e["type"] for e in listed) == ["booking.created", "booking.updated", "lead.created"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("publish", "lead-created", "--data", '{"id": 5}'),
            "event: data.id: input should be a valid string",
        ),
        (("publish", "lead-created", "--data", "{not json"), "--data: is not valid JSON"),
        (
            ("publish", "lead-created", "--data", "@/no/such/file.json"),
            "--data: cannot read /no/such/file.json",
        ),
        (("publish", "booking-created", "--data", '{"id": "B", "starts_at": "tomorrow"}'), "data.starts_at"),
    ],
)
def test_publish_refuses_bad_events_in_one_line(env: Path, args: tuple[str, ...], message: str) -> None:
    code, out, err = run(*args, ok=False)
    assert code == 65
    assert out == ""
    assert message in err
    assert err.count("\n") == 1
    assert _drain() == []


def test_status_json(env: Path) -> None:
    for i in range(3):
        run("publish", "lead-created", "--data", json.dumps({"id": f"L{i}"}))
    status = json.loads(run("status", "--json")[1])
    assert status["events"] == {"total": 3, "pending": 3, "done": 0, "failed": 0, "dead": 0}
    assert status["queues"]["events"] == 3
    _work()
    status = json.loads(run("status", "--json")[1])
    assert status["events"] == {"total": 3, "pending": 0, "done": 3, "failed": 0, "dead": 0}
    assert status["queues"] == {"events": 0, "widgets": 0, "exports": 0, "lifecycle": 0}
    assert status["plugins"] == {"installed": 1, "enabled": 1, "disabled": {}, "problems": {}}
    assert status["broker"]["transport"] == "embedded"
    assert status["broker"]["url"].endswith("/data/broker.db")


def test_widgets_refresh_then_read(env: Path) -> None:
    assert json.loads(run("widgets", "--json")[1]) == []
    refreshed = json.loads(run("widgets", "refresh", "lead-insights", "--json")[1])
    assert refreshed[0]["status"] == "ok"
    (snap,) = json.loads(run("widgets", "--json")[1])
    assert (snap["plugin_id"], snap["title"], snap["refresh_interval"]) == (
        "lead-insights",
        "Lead Insights",
        60,
    )
    assert "<script" not in snap["html"]
    assert "Lead Insights" in run("widgets")[1]
    run("plugin", "revoke", "lead-insights", "dashboard_widget")
    code, _, err = run("widgets", "refresh", "lead-insights", ok=False)
    assert code == 3  # the true reason, one line
    assert err.strip() == "error: plugin lead-insights: is not granted dashboard_widget"


def test_export_run_and_download(env: Path) -> None:
    for i, company in enumerate(["Acme", None, "Initech"]):
        run(
            "publish",
            "lead-created",
            "--data",
            json.dumps({"id": f"L{i}", "company": company, "email": "x@y.io"}),
        )
    _work()
    out_csv = env / "leads.csv"
    export_id = run("export", "run", "leads", "--filter", "min_score=0", "-o", str(out_csv))[1].strip()
    rows = list(csv.DictReader(out_csv.open()))
    assert sorted(r["lead_id"] for r in rows) == ["L0", "L1", "L2"]
    assert {r["plugin_id"] for r in rows} == {"lead-insights"}
    shown = json.loads(run("export", "show", export_id, "--json")[1])
    assert (shown["status"], shown["row_count"]) == ("done", 3)
    as_json = json.loads(run("export", "download", export_id, "--format", "json")[1])
    assert len(as_json) == 3
    assert export_id in run("export", "list")[1]
    code, _, err = run("export", "run", "leads", "--since", "2026-13-40", ok=False)
    assert (code, "since: '2026-13-40' is not a date" in err) == (65, True)


def test_dlq_list_and_replay(env: Path) -> None:
    reset_config()
    host = Host().ready()
    runtime = host.runtime
    host.processor.process([Incoming({"type": "lead.created", "data": {"id": "L", "phone": 5}})])
    runtime.close()
    (letter,) = json.loads(run("dlq", "list", "--json")[1])
    assert letter["reason"] == "event: data.phone: input should be a valid string"
    code, _, err = run("dlq", "replay", str(letter["id"]), ok=False)
    assert code == 1
    assert "not replayed: event: data.phone: input should be a valid string" in err
    code, _, err = run("dlq", "replay", ok=False)
    assert code == 2
    assert "give dead-letter ids, or --all" in err


def test_replay_now_backfills_one_plugin(env: Path) -> None:
    run("plugin", "disable", "lead-insights")
    run("publish", "lead-created", "--data", '{"id": "L1"}')
    _work()
    shown = json.loads(run("events", "list", "--json")[1])
    assert shown[0]["status"] == "done"
    run("plugin", "enable", "lead-insights")
    _, out, _ = run("replay", "--plugin", "lead-insights", "--since", "2000-01-01", "--now")
    assert "replayed 1 event(s) through lead-insights: 1 success, 0 failed" in out
    event_id = shown[0]["event_id"]
    assert json.loads(run("events", "show", event_id, "--json")[1])["results"][0]["status"] == "success"
    code, _, err = run("replay", "--plugin", "lead-insights", "--since", "yesterday", "--now", ok=False)
    assert code == 65
    assert "--since: 'yesterday' is not a date" in err
