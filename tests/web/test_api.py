"""The JSON API, as a program uses it: bearer tokens, the same objects as the CLI's --json,
and every error status of the web layer's table with a body that names what is wrong."""

from __future__ import annotations

import json
import time
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from click.testing import CliRunner

from services_ai_plugins.cli import cli
from services_ai_plugins.host import Host
from services_ai_plugins.web.app import create_app
from tests.helpers import manifest_for, write_plugin
from tests.web.conftest import Web

LEAD = {
    "type": "lead.created",
    "data": {"id": "L-1", "name": "Ada", "email": "ada@example.com", "company": "Acme"},
}


def _install(web: Web, data: bytes, scope: str = "admin") -> dict:
    answer = web.client.post("/api/v1/plugins", headers=web.bearer(scope), files={"file": ("p.zip", data)})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _error(answer, status: int, *words: str) -> dict:
    assert answer.status_code == status, (answer.status_code, answer.text)
    body = answer.json()
    assert set(body) == {"error", "detail", "fields"}, body
    for word in words:
        assert word in body["detail"], (word, body)
    return body


# -- plugins ----------------------------------------------------------------------------------


def test_install_returns_the_plugin_as_plugin_list_json_shows_it(
    web: Web, sample_zip: bytes, monkeypatch
) -> None:
    made = _install(web, sample_zip)
    assert made["id"] == "lead-insights" and made["enabled"] is False
    assert made["permissions"] == dict.fromkeys(
        ("lead_access", "booking_access", "dashboard_widget", "data_export"), False
    )
    listed = web.client.get("/api/v1/plugins", headers=web.bearer("admin")).json()
    monkeypatch.setenv("DATABASE_URL", web.host.config.database_url)
    monkeypatch.setenv("SERVICES_AI_DATA_DIR", str(web.host.config.data_dir))
    from services_ai_plugins.config import reset_config

    reset_config()
    cli_json = json.loads(CliRunner().invoke(cli, ["plugin", "list", "--json"]).output)
    assert listed == cli_json
    shown = web.client.get("/api/v1/plugins/lead-insights", headers=web.bearer("admin")).json()
    assert shown["versions"][0]["current"] is True and shown["settings"]


def test_an_admin_manages_a_plugin_through_the_api(web: Web, sample_zip: bytes) -> None:
    _install(web, sample_zip)
    auth = web.bearer("admin")
    for name in ("lead_access", "dashboard_widget"):
        answer = web.client.put(
            f"/api/v1/plugins/lead-insights/permissions/{name}", headers=auth, json={"granted": True}
        )
        assert answer.status_code == 200 and answer.json()["permissions"][name] is True
    answer = web.client.put(
        "/api/v1/plugins/lead-insights/settings",
        headers=auth,
        json={"min_score": 70, "api_key": "s3cret-key"},
    )
    assert answer.status_code == 200
    settings = web.client.get("/api/v1/plugins/lead-insights/settings", headers=auth).json()
    assert settings["min_score"] == 70 and settings["api_key"] == "********"
    assert "s3cret-key" not in json.dumps(
        web.client.get("/api/v1/plugins/lead-insights", headers=auth).json()
    )
    assert web.client.post("/api/v1/plugins/lead-insights/enable", headers=auth).json()["enabled"] is True
    assert web.client.post("/api/v1/plugins/lead-insights/disable", headers=auth).json()["enabled"] is False
    answer = web.client.delete("/api/v1/plugins/lead-insights", headers=auth, params={"purge": "true"})
    assert answer.status_code == 200
    _error(
        web.client.get("/api/v1/plugins/lead-insights", headers=auth), 404, "lead-insights", "not installed"
    )
    actions = [e["action"] for e in web.client.get("/api/v1/audit", headers=auth).json()]
    assert {"install", "grant", "configure", "enable", "disable", "uninstall"} <= set(actions)
    assert all(
        e["actor"].startswith("token:")
        for e in web.client.get("/api/v1/audit", headers=auth, params={"plugin_id": "lead-insights"}).json()
    )


def test_settings_are_all_or_nothing_and_a_bad_one_is_named(web: Web, sample_zip: bytes) -> None:
    _install(web, sample_zip)
    auth = web.bearer("admin")
    answer = web.client.put(
        "/api/v1/plugins/lead-insights/settings", headers=auth, json={"greeting": "Hi", "min_score": "70"}
    )
    body = _error(answer, 422, "min_score")
    assert [f["field"] for f in body["fields"]] == ["min_score"]
    assert (
        web.client.get("/api/v1/plugins/lead-insights/settings", headers=auth).json()["greeting"]
        == "Lead scores"
    )
    _error(
        web.client.put("/api/v1/plugins/lead-insights/settings", headers=auth, json={"nope": 1}), 422, "nope"
    )
    _error(web.client.put("/api/v1/plugins/lead-insights/settings", headers=auth, json=[1, 2]), 422)


def test_upgrade_and_rollback(web: Web, sample_zip: bytes, tmp_path: Path) -> None:
    _install(web, sample_zip)
    auth = web.bearer("admin")
    _error(web.client.post("/api/v1/plugins/lead-insights/rollback", headers=auth), 409, "no earlier version")
    newer = _rewrite(sample_zip, version="1.1.0")
    answer = web.client.post(
        "/api/v1/plugins/lead-insights/upgrade", headers=auth, files={"file": ("p.zip", newer)}
    )
    assert answer.status_code == 200 and answer.json()["version"] == "1.1.0"
    assert (
        web.client.post("/api/v1/plugins/lead-insights/rollback", headers=auth).json()["version"] == "1.0.0"
    )


def _rewrite(data: bytes, **manifest: str) -> bytes:
    out = BytesIO()
    with zipfile.ZipFile(BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename == "manifest.json":
                content = json.dumps({**json.loads(content), **manifest}).encode()
            dst.writestr(info, content)
    return out.getvalue()


# -- refusals: every status of the table ---------------------------------------------------


def test_uploads_that_are_refused(web: Web, sample_zip: bytes) -> None:
    auth = web.bearer("admin")
    _error(
        web.client.post("/api/v1/plugins", headers=auth, files={"file": ("p.zip", b"not a zip")}),
        422,
        "not a ZIP",
    )
    _error(web.client.post("/api/v1/plugins", headers=auth, files={"file": ("p.zip", b"")}), 422, "empty")
    no_manifest = BytesIO()
    with zipfile.ZipFile(no_manifest, "w") as z:
        z.writestr("main.py", "x = 1\n")
    _error(
        web.client.post("/api/v1/plugins", headers=auth, files={"file": ("p.zip", no_manifest.getvalue())}),
        422,
        "manifest",
    )
    body = _error(web.client.post("/api/v1/plugins", headers=auth, data={"nothing": "here"}), 422)
    assert body["fields"][0]["field"] == "file"
    _install(web, sample_zip)
    _error(
        web.client.post("/api/v1/plugins", headers=auth, files={"file": ("p.zip", sample_zip)}),
        409,
        "already installed",
    )
    assert [p["id"] for p in web.client.get("/api/v1/plugins", headers=auth).json()] == ["lead-insights"]


def test_an_upload_over_the_cap_is_refused_before_it_is_read(sqlite_host: Host, sample_zip: bytes) -> None:
    config = sqlite_host.config.model_copy(update={"max_archive_bytes": 4096, "web_max_body_bytes": 2048})
    host = Host(config, sqlite_host.db, tasks="inline")
    _made, token = host.accounts.create_token("admin")
    publisher = {"Authorization": f"Bearer {host.accounts.create_token('publish')[1]}"}
    from fastapi.testclient import TestClient

    client = TestClient(create_app(host), base_url="https://testserver")
    auth = {"Authorization": f"Bearer {token}"}
    big = b"PK" + b"\0" * 200_000
    body = _error(client.post("/api/v1/plugins", headers=auth, files={"file": ("p.zip", big)}), 413)
    assert str(4096 + 64 * 1024) in body["detail"]
    body = _error(
        client.put(
            "/api/v1/plugins/x/settings",
            headers={**auth, "content-type": "application/json"},
            content=b"{" + b" " * 5000 + b"}",
        ),
        413,
    )
    assert "2048" in body["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b"x" * 1000

    _error(
        client.post(
            "/api/v1/events", headers={**publisher, "content-type": "application/json"}, content=chunks()
        ),
        413,
    )
    assert host.registry.plugins() == []


def test_not_found_answers(web: Web, sample_zip: bytes) -> None:
    auth = web.bearer("admin")
    _error(web.client.get("/api/v1/plugins/nope", headers=auth), 404, "nope")
    _error(web.client.post("/api/v1/plugins/nope/enable", headers=auth), 404, "nope")
    _error(web.client.get("/api/v1/events/E-404", headers=auth), 404, "E-404")
    _error(web.client.get("/api/v1/exports/x", headers=auth), 404)
    _error(web.client.get("/api/v1/widgets/nope", headers=web.bearer("dashboard")), 404)
    _error(web.client.get("/api/v1/no-such-route", headers=auth), 404)
    _install(web, sample_zip)
    _error(
        web.client.put(
            "/api/v1/plugins/lead-insights/permissions/root_access", headers=auth, json={"granted": True}
        ),
        404,
        "root_access",
    )
    _error(
        web.client.put(
            "/api/v1/plugins/lead-insights/permissions/network", headers=auth, json={"granted": True}
        ),
        404,
        "does not declare",
    )
    _error(web.client.post("/api/v1/dead-letters/replay", headers=auth, json={"ids": [999]}), 404, "999")


def test_state_conflicts(web: Web, tmp_path: Path) -> None:
    folder = write_plugin(
        tmp_path / "needs_key",
        manifest_for("Needs Key", hooks=[], settings=[{"name": "key", "type": "password", "required": True}]),
        "from services_ai_plugins.hookspecs import hookimpl\n",
    )
    web.host.registry.install(folder)
    body = _error(
        web.client.post("/api/v1/plugins/needs-key/enable", headers=web.bearer("admin")), 409, "key"
    )
    assert body["error"] == "MissingSettingsError"


def test_bad_request_bodies_get_422_naming_the_field(web: Web, sample_zip: bytes) -> None:
    auth = web.bearer("admin")
    _install(web, sample_zip)
    body = _error(
        web.client.put(
            "/api/v1/plugins/lead-insights/permissions/lead_access", headers=auth, json={"granted": "yes"}
        ),
        422,
    )
    assert body["fields"][0]["field"] == "granted"
    _error(
        web.client.put(
            "/api/v1/plugins/lead-insights/permissions/lead_access",
            headers=auth,
            content=b"{not json",
        ),
        422,
    )
    _error(
        web.client.post("/api/v1/plugins/lead-insights/replay", headers=auth, json={"since": "yesterday"}),
        422,
        "since",
    )
    _error(
        web.client.post(
            "/api/v1/exports",
            headers=auth,
            json={"export_type": "leads", "since": "2026-02-01", "until": "2026-01-01"},
        ),
        422,
        "until",
    )
    _error(web.client.get("/api/v1/events", headers=auth, params={"limit": 0}), 422, "limit")
    _error(web.client.get("/api/v1/events", headers=auth, params={"type": "lead.deleted"}), 422, "type")
    _error(web.client.post("/api/v1/dead-letters/replay", headers=auth, json={}), 422, "ids")


def test_a_method_the_route_does_not_take(web: Web) -> None:
    _error(web.client.patch("/api/v1/plugins", headers=web.bearer("admin")), 405)


# -- events over HTTP ----------------------------------------------------------------------


def test_a_platform_service_publishes_over_http(web: Web) -> None:
    answer = web.client.post(
        "/api/v1/events", headers=web.bearer("publish"), json={**LEAD, "event_id": "evt-http-1"}
    )
    assert answer.status_code == 202 and answer.json() == {"event_id": "evt-http-1"}
    again = web.client.post(
        "/api/v1/events", headers=web.bearer("publish"), json={**LEAD, "event_id": "evt-http-1"}
    )
    assert again.status_code == 202 and again.json() == {"event_id": "evt-http-1"}
    fresh = web.client.post("/api/v1/events", headers=web.bearer("publish"), json=LEAD).json()["event_id"]
    assert fresh != "evt-http-1" and len(fresh) >= 32


def test_events_are_validated_as_publish_validates_them(web: Web) -> None:
    auth = web.bearer("publish")
    body = _error(
        web.client.post(
            "/api/v1/events", headers=auth, json={"type": "lead.created", "data": {"email": "x@y.z"}}
        ),
        422,
    )
    assert any(f["field"].endswith("id") for f in body["fields"])
    _error(
        web.client.post("/api/v1/events", headers=auth, json={"type": "lead.deleted", "data": {}}),
        422,
        "type",
    )
    _error(web.client.post("/api/v1/events", headers=auth, content=b"\x80\x81 not json"), 422)
    _error(
        web.client.post("/api/v1/events", headers=auth, content=b'{"type": "lead.created", "type": "x"}'), 422
    )
    _error(web.client.post("/api/v1/events", headers=auth, json=[LEAD]), 422)


def test_publishing_when_the_broker_is_down_is_503_with_retry_after(sqlite_host: Host) -> None:
    config = sqlite_host.config.model_copy(
        update={"broker_url_env": "redis://127.0.0.1:9/0", "publish_retries": 0}
    )
    host = Host(config, sqlite_host.db, tasks="inline")
    token = host.accounts.create_token("publish")[1]
    from fastapi.testclient import TestClient

    client = TestClient(create_app(host), base_url="https://testserver")
    answer = client.post("/api/v1/events", headers={"Authorization": f"Bearer {token}"}, json=LEAD)
    body = _error(answer, 503, "did not accept")
    assert answer.headers["retry-after"] and body["error"] == "BrokerUnavailableError"


def test_event_results_read_as_events_show_json(web: Web, sample_zip: bytes) -> None:
    _install(web, sample_zip)
    registry = web.host.registry
    registry.grant("lead-insights", "lead_access")
    registry.enable("lead-insights")
    from services_ai_plugins.pipeline.processor import Incoming
    from services_ai_plugins.publisher import validate

    envelope = validate({**LEAD, "event_id": "evt-results"}).model_dump(mode="json")
    web.host.processor.process([Incoming(envelope)])
    shown = web.client.get("/api/v1/events/evt-results", headers=web.bearer("admin")).json()
    assert shown["status"] == "done"
    (result,) = shown["results"]
    assert (
        result["plugin_id"] == "lead-insights"
        and result["status"] == "success"
        and "score" in result["result"]
    )
    listed = web.client.get("/api/v1/events", headers=web.bearer("admin"), params={"status": "done"}).json()
    assert [e["event_id"] for e in listed] == ["evt-results"]
    activity = web.client.get("/api/v1/plugins/lead-insights/activity", headers=web.bearer("admin")).json()
    assert (
        activity["by_status"] == {"success": 1}
        and activity["error_rate"] == 0
        and activity["p50_ms"] is not None
    )


def test_status_is_status_json(web: Web) -> None:
    info = web.client.get("/api/v1/status", headers=web.bearer("admin")).json()
    assert set(info["events"]) == {"total", "pending", "done", "failed", "dead"}
    assert (
        info["isolation"]["mode"] == "inline" and "queues" in info and info["broker"]["ok"] in (True, False)
    )


@pytest.mark.parametrize("scope", ["dashboard", "admin"])
def test_the_widget_list_answers_304_while_nothing_changed(web: Web, sample_zip: bytes, scope: str) -> None:
    _install(web, sample_zip)
    registry = web.host.registry
    registry.grant("lead-insights", "dashboard_widget")
    registry.enable("lead-insights")
    auth = web.bearer(scope)
    first = web.client.get("/api/v1/widgets", headers=auth)
    assert first.status_code == 200 and first.json() == [] and first.headers["etag"]
    tag = first.headers["etag"]
    assert web.client.get("/api/v1/widgets", headers={**auth, "If-None-Match": tag}).status_code == 304
    web.host.widgets.refresh("lead-insights")
    time.sleep(web.host.config.web_cache_seconds)  # a web process re-reads the tag this often
    changed = web.client.get("/api/v1/widgets", headers={**auth, "If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    (widget,) = changed.json()
    assert widget["plugin_id"] == "lead-insights" and widget["ok"] is True
    tag = changed.headers["etag"]
    unchanged = web.client.get("/api/v1/widgets", headers={**auth, "If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    registry.revoke("lead-insights", "dashboard_widget")  # no longer shown: the list changes
    time.sleep(web.host.config.web_cache_seconds)
    gone = web.client.get("/api/v1/widgets", headers={**auth, "If-None-Match": tag})
    assert gone.status_code == 200 and gone.json() == []
    one = web.client.get("/api/v1/widgets/lead-insights", headers=auth)
    assert one.status_code == 404
