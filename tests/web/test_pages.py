"""The administrators' pages in process: forms and what they change, hostile plugin text shown
escaped, plugin HTML only in sandboxed frames, and no plugin code in the web app's process."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from services_ai_plugins.calling.sandbox.process import ProcessExecutor
from services_ai_plugins.host import Host
from services_ai_plugins.lifecycle.packaging import package_dir
from services_ai_plugins.web.app import create_app
from tests.helpers import manifest_for, write_plugin
from tests.web.conftest import ADMIN_PASSWORD, Web, login


def _flash(html: str) -> list[str]:
    return [
        " ".join(t.split()) for t in re.findall(r'alert-dismissible fade show" role="alert">\s*([^<]+)', html)
    ]


def _upload(client: TestClient, token: str, data: bytes):
    return client.post("/plugins/upload", data={"csrftoken": token}, files={"file": ("plugin.zip", data)})


def test_the_plugin_pages_walk_through_a_plugins_life(web: Web, admin, sample_zip: bytes) -> None:
    client, token = admin
    refused = _upload(client, token, b"this is no zip")
    assert refused.status_code == 422
    assert re.search(r'is-invalid.*?invalid-feedback" role="alert">not a ZIP archive', refused.text, re.S)
    page = _upload(client, token, sample_zip)
    assert page.url.path == "/plugins/lead-insights"
    assert _flash(page.text) == ["installed Lead Insights 1.0.0: disabled, every permission off"]
    for name in ("lead_access", "dashboard_widget"):
        page = client.post(
            f"/plugins/lead-insights/permissions/{name}", data={"csrftoken": token, "granted": "true"}
        )
        assert _flash(page.text) == [f"granted {name}"]
    assert web.host.registry.show("lead-insights").permissions["lead_access"] is True
    # The typed settings form: a wrong number is refused with the field's message; nothing saved.
    bad = client.post(
        "/plugins/lead-insights/settings",
        data={
            "csrftoken": token,
            "min_score": "500",
            "greeting": "Changed",
            "notify_sales": ["false", "true"],
        },
    )
    assert bad.status_code == 422
    assert re.search(r'data-setting="min_score".*?is-invalid.*?invalid-feedback">[^<]*100', bad.text, re.S)
    assert web.host.registry.typed_settings("lead-insights")["greeting"] == "Lead scores"
    untouched = client.post(
        "/plugins/lead-insights/settings", data={"csrftoken": token, "greeting": "Hi", "api_key": ""}
    )
    assert _flash(untouched.text) == ["settings saved"]
    assert 'placeholder="not set"' in untouched.text  # an empty secret field sets nothing
    good = client.post(
        "/plugins/lead-insights/settings",
        data={
            "csrftoken": token,
            "min_score": "70",
            "notify_sales": "false",
            "scoring_model": "b2b",
            "api_key": "k-123456",
        },
    )
    assert _flash(good.text) == ["settings saved"]
    typed = web.host.registry.typed_settings("lead-insights")
    assert (typed["min_score"], typed["notify_sales"], typed["scoring_model"], typed["api_key"]) == (
        70,
        False,
        "b2b",
        "k-123456",
    )
    assert "k-123456" not in good.text  # secrets are never sent back to the browser
    # The secret's field comes back empty; saving the form again leaves the stored key alone.
    again = client.post(
        "/plugins/lead-insights/settings", data={"csrftoken": token, "min_score": "71", "api_key": ""}
    )
    assert _flash(again.text) == ["settings saved"]
    typed = web.host.registry.typed_settings("lead-insights")
    assert (typed["min_score"], typed["api_key"]) == (71, "k-123456")
    enabled = client.post("/plugins/lead-insights/enable", data={"csrftoken": token})
    assert _flash(enabled.text) == ["enabled lead-insights"] and 'id="plugin-status">Enabled' in enabled.text
    detail = client.get("/plugins/lead-insights").text
    for card in (
        'id="information"',
        'id="permissions"',
        'id="custom-settings"',
        'id="settings"',
        'id="uninstall-modal"',
    ):
        assert card in detail
    gone = client.post("/plugins/lead-insights/uninstall", data={"csrftoken": token, "purge": "true"})
    assert gone.url.path == "/plugins" and _flash(gone.text) == [
        "uninstalled Lead Insights and purged its results"
    ]
    assert web.host.registry.plugins() == []
    audit = client.get("/audit").text
    assert all(
        action in audit for action in ("install", "grant", "configure", "enable", "uninstall", "web:admin")
    )


def test_the_settings_form_has_a_field_per_setting_type(web: Web, admin, sample_zip: bytes) -> None:
    client, token = admin
    _upload(client, token, sample_zip)
    html = client.get("/plugins/lead-insights").text
    assert re.search(r'type="number" step="any"[^>]*name="min_score"[^>]*min="0"[^>]*max="100"', html)
    assert re.search(r'type="checkbox"[^>]*name="notify_sales" value="true" checked', html)
    assert re.search(
        r'<select[^>]*name="scoring_model".*?<option value="basic" selected>Basic</option>', html, re.S
    )
    assert re.search(r'<textarea[^>]*name="notes_footer"', html)
    assert re.search(r'type="password"[^>]*name="api_key" value=""', html)
    assert "Hot lead threshold" in html and "Leads scoring at least this are marked hot" in html


def test_the_plugins_own_settings_page_is_framed_sandboxed(web: Web, admin, sample_zip: bytes) -> None:
    client, token = admin
    _upload(client, token, sample_zip)
    detail = client.get("/plugins/lead-insights").text
    assert re.search(r'<iframe[^>]*sandbox[^>]*src="/plugins/lead-insights/settings-page"', detail)
    frame = client.get("/plugins/lead-insights/settings-page")
    assert frame.status_code == 200 and "Leads scoring at least <strong>60</strong>" in frame.text
    policy = frame.headers["content-security-policy"]
    assert policy.startswith("sandbox;") and "script-src" not in policy and "default-src 'none'" in policy
    assert frame.headers["x-frame-options"] == "SAMEORIGIN"
    # The frame's opaque origin may load the app's public stylesheets; its pages stay same-origin.
    assert frame.headers["cross-origin-resource-policy"] == "same-origin"
    for sheet in re.findall(r'<link rel="stylesheet" href="([^"]+)"', frame.text):
        served = client.get(sheet)
        assert served.status_code == 200, sheet
        assert served.headers.get_list("cross-origin-resource-policy") == ["cross-origin"], sheet


def test_pages_forbid_scripts_and_framing(web: Web, admin) -> None:
    client, _ = admin
    page = client.get("/plugins")
    policy = page.headers["content-security-policy"]
    assert (
        "script-src 'self'" in policy
        and "frame-ancestors 'none'" in policy
        and "'unsafe-inline'" not in policy
    )
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and " on" + "click=" not in page.text


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_hostile_plugin_text_is_shown_escaped(web: Web, admin, tmp_path: Path) -> None:
    client, token = admin
    manifest = manifest_for(
        "Evil Plugin",
        hooks=["dashboard_widget"],
        description=HOSTILE,
        author=HOSTILE[:100],
        permissions=[{"name": "dashboard_widget", "description": HOSTILE}],
        settings=[
            {"name": "x", "type": "text", "label": HOSTILE[:100], "description": HOSTILE, "default": HOSTILE}
        ],
    )
    main = (
        "from services_ai_plugins.hookspecs import hookimpl\n"
        "@hookimpl\n"
        "def dashboard_widget(plugin_id, context):\n"
        f"    return {{'title': {HOSTILE!r}, 'html': {HOSTILE + '<b>bold</b><img src=https://evil.example/p.gif>'!r}, 'refresh_interval': 60}}\n"
    )
    folder = write_plugin(tmp_path / "evil_plugin", manifest, main)
    answer = _upload(client, token, package_dir(folder))
    assert answer.status_code == 200, answer.text[:300]
    plugin_id = web.host.registry.plugins()[0].id
    web.host.registry.grant(plugin_id, "dashboard_widget")
    web.host.registry.enable(plugin_id)
    web.host.widgets.refresh(plugin_id)
    for page in ("/plugins", f"/plugins/{plugin_id}", "/dashboard", "/audit"):
        html = client.get(page).text
        assert "<script>alert" not in html and "<img src=x" not in html, page
    assert "&lt;script&gt;alert" in client.get("/plugins").text  # shown, as text
    frame = client.get(f"/dashboard/widgets/{plugin_id}/frame")
    assert "<b>bold</b>" in frame.text and "<script" not in frame.text and "onerror" not in frame.text
    assert "img-src 'self'" in frame.headers["content-security-policy"]  # the evil.example image never loads


def test_event_and_dead_letter_pages(web: Web, admin, sample_zip: bytes) -> None:
    from services_ai_plugins.pipeline.processor import Incoming

    client, token = admin
    _upload(client, token, sample_zip)
    web.host.registry.grant("lead-insights", "lead_access")
    web.host.registry.enable("lead-insights")
    web.host.processor.process(
        [
            Incoming(
                {"type": "lead.created", "event_id": "evt-page", "data": {"id": "L-7", "company": "Acme"}}
            ),
            Incoming({"type": "lead.created", "data": "not an object"}),
        ]
    )
    events = client.get("/events").text
    assert "evt-page" in events
    detail = client.get("/events/evt-page").text
    assert re.search(r'data-plugin="lead-insights".*?text-bg-success">success', detail, re.S)
    letters = client.get("/dead-letters").text
    (letter_id,) = re.findall(r'name="id" value="(\d+)"', letters)
    replayed = client.post("/dead-letters/replay", data={"csrftoken": token, "id": letter_id})
    assert "not replayed" in _flash(replayed.text)[0] and "data" in _flash(replayed.text)[0]
    activity = client.get("/plugins/lead-insights/activity").text
    assert 'id="error-rate">0.0%' in activity
    queued = client.post("/plugins/lead-insights/replay", data={"csrftoken": token, "since": "2020-01-01"})
    assert _flash(queued.text) == ["replay of lead-insights since 2020-01-01 00:00 queued"]
    refused = client.post("/plugins/lead-insights/replay", data={"csrftoken": token, "since": "soon"})
    assert "since" in _flash(refused.text)[0]


def test_exports_ops_and_a_missing_page(web: Web, admin) -> None:
    client, token = admin
    started = client.post("/exports", data={"csrftoken": token, "export_type": "leads"})
    assert started.url.path.startswith("/exports/") and "export leads started" in _flash(started.text)[0]
    assert 'id="export-status">done' in started.text  # inline tasks here: it ran at once
    ops = client.get("/ops").text
    assert 'id="isolation-mode">inline' in ops and 'data-count="pending"' in ops
    missing = client.get("/plugins/nope")
    assert missing.status_code == 404 and "nope" in missing.text


def test_the_web_app_never_loads_plugin_code(tmp_path: Path, sqlite_host: Host, sample_zip: bytes) -> None:
    """Whatever the isolation setting, the app's host runs plugin code only in sandboxes: an
    upload is validated and a settings page rendered there, never imported here."""
    config = sqlite_host.config  # plugin_isolation is "inline" in the unit tests
    assert config.plugin_isolation == "inline"
    app = create_app(config=config)
    host: Host = app.state.host
    assert isinstance(host.executor, ProcessExecutor)
    host.accounts.create_user("admin", ADMIN_PASSWORD, "admin")
    before = {m for m in sys.modules if m.startswith("_sai_plugin_")}
    with TestClient(app, base_url="https://testserver") as client:
        token = login(client, "admin", ADMIN_PASSWORD)
        assert _upload(client, token, sample_zip).url.path == "/plugins/lead-insights"
        assert "Leads scoring at least" in client.get("/plugins/lead-insights/settings-page").text
    assert {m for m in sys.modules if m.startswith("_sai_plugin_")} == before
    assert host.status.collect()["isolation"]["mode"] == "inline"  # what the workers use, reported as is
    host.close()
