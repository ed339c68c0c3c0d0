"""One test per hook (``test_hook_<name>``), each through the path the product calls it by,
checking the arguments the plugin receives. Meta-tests keep the contract honest: every hook has
a test here and a row in the README's hooks table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.manifest import HOOK_NAMES
from services_ai_plugins.errors import PluginStateError
from services_ai_plugins.host import Host
from services_ai_plugins.lifecycle.runtime import PluginRuntime
from services_ai_plugins.pipeline.processor import Incoming
from tests.helpers import manifest_for, write_plugin

# Every hook records what it received (argument names and a few values) in a JSON-lines file.
SPY = """
import json, pathlib
from services_ai_plugins import hookimpl
LOG = pathlib.Path({log!r})

def _seen(hook, **kwargs):
    context = kwargs.pop("context", None)
    entry = {{"hook": hook, "args": sorted(kwargs) + (["context"] if context is not None else []),
             "values": {{k: v for k, v in kwargs.items() if isinstance(v, (str, int, type(None)))}}}}
    if context is not None:
        entry["context_keys"] = sorted(context)
        entry["plugin_id"] = context["plugin_id"]
        entry["settings"] = context["settings"]
        entry["event"] = context.get("event")
    with LOG.open("a") as fh:
        fh.write(json.dumps(entry, default=str) + "\\n")

@hookimpl
def plugin_installed(plugin_id, plugin_info, context):
    _seen("plugin_installed", plugin_id=plugin_id, version=plugin_info["version"], context=context)

@hookimpl
def plugin_uninstalled(plugin_id, context):
    _seen("plugin_uninstalled", plugin_id=plugin_id, context=context)

@hookimpl
def plugin_enabled(plugin_id, context):
    _seen("plugin_enabled", plugin_id=plugin_id, context=context)

@hookimpl
def plugin_disabled(plugin_id, context):
    _seen("plugin_disabled", plugin_id=plugin_id, context=context)

@hookimpl
def lead_created(lead, context):
    _seen("lead_created", lead_id=lead["id"], email=lead.email, context=context)
    return {{"status": "success"}}

@hookimpl
def booking_created(booking, context):
    _seen("booking_created", booking_id=booking["id"], context=context)
    return {{"status": "success"}}

@hookimpl
def booking_updated(booking, previous_state, context):
    _seen("booking_updated", status=booking["status"], was=previous_state["status"], context=context)
    return {{"status": "success"}}

@hookimpl
def dashboard_widget(plugin_id, context):
    _seen("dashboard_widget", plugin_id=plugin_id, context=context)
    return "<p>w</p>"

@hookimpl
def settings_page(plugin_id, context):
    _seen("settings_page", plugin_id=plugin_id, context=context)
    return "<p>settings</p>"

@hookimpl
def data_export(export_type, data_type, start_date, end_date, filters, context):
    _seen("data_export", export_type=export_type, data_type=data_type, start=str(start_date),
          end=str(end_date), mode=filters.get("mode"), records=len(context["records"]), context=context)
    return [{{"n": 1}}]
"""

PERMISSIONS = ["lead_access", "booking_access", "dashboard_widget", "data_export"]


class Spy:
    def __init__(self, host: Host, tmp_path: Path) -> None:
        self.host = host
        self.log = tmp_path / "spy.log"
        manifest = manifest_for(
            "Spy",
            hooks=list(HOOK_NAMES),
            permissions=PERMISSIONS,
            settings=[
                {"name": "level", "type": "number", "default": 3},
                {"name": "token", "type": "password"},
            ],
        )
        self.folder = write_plugin(tmp_path / "spy", manifest, SPY.format(log=str(self.log)))

    def calls(self, hook: str) -> list[dict]:
        if not self.log.exists():
            return []
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [e for e in entries if e["hook"] == hook]

    def ready(self, grant: bool = True) -> PluginRuntime:
        self.host.registry.install(self.folder)
        self.host.registry.set_settings("spy", {"token": "tok-123"})
        if grant:
            for p in PERMISSIONS:
                self.host.registry.grant("spy", p)
        self.host.registry.enable("spy")
        return self.host.runtime


@pytest.fixture
def spy(host: Host, tmp_path: Path) -> Spy:
    return Spy(host, tmp_path)


BASE_CONTEXT = ["logger", "plugin", "plugin_id", "request", "settings", "user"]


def test_hook_plugin_installed(spy: Spy) -> None:
    spy.host.registry.install(spy.folder, actor="ann")
    (call,) = spy.calls("plugin_installed")
    assert call["values"] == {"plugin_id": "spy", "version": "1.0.0"}
    assert call["context_keys"] == BASE_CONTEXT
    assert call["settings"] == {"level": 3, "token": None}


def test_hook_plugin_enabled(spy: Spy) -> None:
    spy.ready()
    (call,) = spy.calls("plugin_enabled")
    assert call["values"] == {"plugin_id": "spy"}
    assert call["settings"] == {"level": 3, "token": "tok-123"}  # its own secret, decrypted for it


def test_hook_plugin_disabled(spy: Spy) -> None:
    spy.ready()
    spy.host.registry.disable("spy")
    assert [c["values"] for c in spy.calls("plugin_disabled")] == [{"plugin_id": "spy"}]


def test_hook_plugin_uninstalled(spy: Spy) -> None:
    spy.ready()
    spy.host.registry.uninstall("spy")
    assert [c["values"] for c in spy.calls("plugin_uninstalled")] == [{"plugin_id": "spy"}]


def test_hook_lead_created(spy: Spy) -> None:
    runtime = spy.ready()
    spy.host.processor.process(
        [
            Incoming(
                {
                    "event_id": "e1",
                    "type": "lead.created",
                    "source": "crm",
                    "data": {"id": "L1", "email": "a@b.co"},
                }
            )
        ]
    )
    (call,) = spy.calls("lead_created")
    assert call["values"] == {"lead_id": "L1", "email": "a@b.co"}
    assert call["context_keys"] == sorted([*BASE_CONTEXT, "event", "idempotency_key"])
    assert call["event"]["event_id"] == "e1"
    assert call["event"]["source"] == "crm"
    runtime.close()


def test_hook_booking_created(spy: Spy) -> None:
    runtime = spy.ready()
    spy.host.processor.process(
        [Incoming({"type": "booking.created", "data": {"id": "B1", "starts_at": "2026-01-01T10:00:00Z"}})]
    )
    assert [c["values"] for c in spy.calls("booking_created")] == [{"booking_id": "B1"}]
    runtime.close()


def test_hook_booking_updated(spy: Spy) -> None:
    runtime = spy.ready()
    before = {"id": "B1", "starts_at": "2026-01-01T10:00:00Z", "status": "pending"}
    spy.host.processor.process(
        [
            Incoming(
                {
                    "type": "booking.updated",
                    "data": {**before, "status": "confirmed"},
                    "previous_state": before,
                }
            )
        ]
    )
    assert [c["values"] for c in spy.calls("booking_updated")] == [{"status": "confirmed", "was": "pending"}]
    runtime.close()


def test_hook_dashboard_widget(spy: Spy) -> None:
    runtime = spy.ready()
    snap = spy.host.widgets.refresh("spy")
    assert snap is not None
    assert snap["html"] == "<p>w</p>"
    (call,) = spy.calls("dashboard_widget")
    assert call["values"] == {"plugin_id": "spy"}
    assert "recent_results" in call["context_keys"]
    runtime.close()


def test_hook_settings_page(spy: Spy) -> None:
    spy.ready(grant=False)
    outcome = spy.host.registry.render_settings_page("spy", actor="ann")
    assert outcome is not None
    assert outcome.result == "<p>settings</p>"
    assert [c["values"] for c in spy.calls("settings_page")] == [{"plugin_id": "spy"}]


def test_hook_data_export(spy: Spy) -> None:
    runtime = spy.ready()
    spy.host.processor.process(
        [Incoming({"type": "lead.created", "occurred_at": "2026-03-02T12:00:00Z", "data": {"id": "L1"}})]
    )
    service = spy.host.exports
    job = service.run(service.create("leads", "2026-03-01", "2026-03-31", {"mode": "full"}))
    assert job["row_count"] == 1
    (call,) = spy.calls("data_export")
    assert call["values"] == {
        "export_type": "leads",
        "data_type": "leads",
        "start": "2026-03-01",
        "end": "2026-03-31",
        "mode": "full",
        "records": 1,
    }
    runtime.close()


def test_no_hook_is_called_without_its_permission(spy: Spy) -> None:
    runtime = spy.ready(grant=False)
    spy.host.processor.process(
        [
            Incoming({"type": "lead.created", "data": {"id": "L1"}}),
            Incoming({"type": "booking.created", "data": {"id": "B1", "starts_at": "2026-01-01T10:00:00Z"}}),
        ]
    )
    with pytest.raises(PluginStateError, match="is not granted dashboard_widget"):
        spy.host.widgets.refresh("spy")
    service = spy.host.exports
    service.run(service.create("summary"))
    for hook in ("lead_created", "booking_created", "dashboard_widget", "data_export"):
        assert spy.calls(hook) == []
    runtime.close()
