"""Widget snapshots: both return forms, sanitised, stale on failure, read without plugin code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services_ai_plugins.calling.caller import HookCaller
from services_ai_plugins.calling.invocation import Invoker
from services_ai_plugins.calling.policy import policy_for
from services_ai_plugins.config import Config
from services_ai_plugins.errors import PluginStateError
from services_ai_plugins.features.widgets import WidgetService
from services_ai_plugins.host import Host
from services_ai_plugins.lifecycle.runtime import PluginRuntime
from tests.helpers import manifest_for, write_plugin

WIDGET = """
import pathlib
from services_ai_plugins import hookimpl
MODE = pathlib.Path({mode!r})

@hookimpl
def dashboard_widget(plugin_id, context):
    mode = MODE.read_text() if MODE.exists() else "dict"
    if mode == "fail":
        raise RuntimeError("backend down")
    if mode == "str":
        return "<div class='card-body' onclick='steal()'>plain<script>alert(1)</script></div>"
    return {{"title": "Scores", "html": "<p class='fs-3 position-fixed'>42</p><a href='javascript:x()'>x</a>",
            "refresh_interval": 30}}
"""


@pytest.fixture
def widget(host: Host, tmp_path: Path) -> Iterator[tuple[WidgetService, PluginRuntime, Path]]:
    mode = tmp_path / "mode"
    folder = write_plugin(
        tmp_path / "w",
        manifest_for("Scores Widget", hooks=["dashboard_widget"], permissions=["dashboard_widget"]),
        WIDGET.format(mode=str(mode)),
    )
    host.registry.install(folder)
    host.registry.grant("scores-widget", "dashboard_widget")
    host.registry.enable("scores-widget")
    runtime = host.runtime
    yield host.widgets, runtime, mode
    runtime.close()


def test_dict_form_is_stored_sanitised(widget: tuple[WidgetService, PluginRuntime, Path]) -> None:
    service, runtime, _ = widget
    snap = service.refresh("scores-widget")
    assert snap is not None
    assert (snap["status"], snap["title"], snap["refresh_interval"]) == ("ok", "Scores", 30)
    assert snap["html"] == '<p class="fs-3">42</p><a rel="noopener noreferrer nofollow">x</a>'
    assert service.snapshots()[0]["html"] == snap["html"]


def test_string_form_uses_the_plugin_name_and_default_interval(
    widget: tuple[WidgetService, PluginRuntime, Path],
) -> None:
    service, runtime, mode = widget
    mode.write_text("str")
    snap = service.refresh("scores-widget")
    assert snap is not None
    assert snap["title"] == "Scores Widget"
    assert snap["refresh_interval"] == 300
    assert snap["html"] == '<div class="card-body">plain</div>'


def test_a_failing_refresh_keeps_the_last_good_snapshot(
    widget: tuple[WidgetService, PluginRuntime, Path],
) -> None:
    service, runtime, mode = widget
    good = service.refresh("scores-widget")
    assert good is not None
    mode.write_text("fail")
    bad = service.refresh("scores-widget")
    assert bad is not None
    assert bad["status"] == "error"
    assert bad["error"] == "RuntimeError: backend down (at main.py:10 in dashboard_widget)"
    assert bad["html"] == good["html"]
    assert bad["rendered_at"] == good["rendered_at"]
    assert bad["stale_since"] is not None
    again = service.refresh("scores-widget")
    assert again is not None
    assert again["stale_since"] == bad["stale_since"]  # stale since the first failure
    mode.write_text("dict")
    fixed = service.refresh("scores-widget")
    assert fixed is not None
    assert (fixed["status"], fixed["stale_since"]) == ("ok", None)


def test_reading_snapshots_runs_no_plugin_code(
    widget: tuple[WidgetService, PluginRuntime, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, runtime, _ = widget
    service.refresh("scores-widget")

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("plugin code ran on the read path")

    monkeypatch.setattr(HookCaller, "call_many", forbidden)
    monkeypatch.setattr(Invoker, "call", forbidden)
    assert [s["plugin_id"] for s in service.snapshots()] == ["scores-widget"]


def test_disabled_or_revoked_widgets_disappear_from_the_dashboard(
    host: Host, widget: tuple[WidgetService, PluginRuntime, Path]
) -> None:
    service, runtime, _ = widget
    service.refresh("scores-widget")
    host.registry.revoke("scores-widget", "dashboard_widget")
    assert service.snapshots() == []
    with pytest.raises(PluginStateError, match="is not granted dashboard_widget"):
        service.refresh("scores-widget")  # no longer permitted: not called
    host.registry.grant("scores-widget", "dashboard_widget")
    host.registry.disable("scores-widget")
    assert service.snapshots() == []


def test_due_follows_each_plugins_interval(widget: tuple[WidgetService, PluginRuntime, Path]) -> None:
    from datetime import timedelta

    from services_ai_plugins.infra.models import utcnow

    service, runtime, _ = widget
    assert service.due() == ["scores-widget"]
    service.refresh("scores-widget")
    assert service.due() == []
    assert service.due(now=utcnow() + timedelta(seconds=31)) == ["scores-widget"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "returned int"),
        ({"html": 5}, "html must be a string"),
        ({"html": "", "colour": "red"}, r"unknown key\(s\) colour"),
        ({"html": "", "refresh_interval": "soon"}, "refresh_interval must be a number"),
    ],
)
def test_bad_widget_values_are_refused(value: object, message: str) -> None:
    shape = policy_for("dashboard_widget", Config()).shape
    assert shape is not None
    with pytest.raises(ValueError, match=message):
        shape(value, "T")


def test_interval_is_clamped_and_the_title_is_plain_text() -> None:
    shape = policy_for("dashboard_widget", Config()).shape
    assert shape is not None
    assert shape({"html": "", "refresh_interval": 0}, "T")["refresh_interval"] == 5
    assert shape({"html": "", "refresh_interval": 10**9}, "T")["refresh_interval"] == 86_400
    assert shape({"html": "", "title": "<b>Leads</b>\u202e <img src=x>"}, "T")["title"] == "Leads"
