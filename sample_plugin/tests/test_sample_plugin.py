"""The sample plugin's own tests: every hook, called through the host's test harness."""

from __future__ import annotations

from pathlib import Path

import pytest

from services_ai_plugins.testing import PluginHarness

PLUGIN = Path(__file__).resolve().parent.parent

LEAD = {
    "id": "l1",
    "name": "Ada",
    "email": "ada@acme.io",
    "phone": "+1 555 0100",
    "company": "Acme",
    "source": "referral",
}
BOOKING = {
    "id": "b1",
    "service": "Consultation",
    "starts_at": "2026-03-01T10:00:00+00:00",
    "ends_at": "2026-03-01T11:30:00+00:00",
    "status": "pending",
}


@pytest.fixture
def plugin():
    with PluginHarness(PLUGIN) as harness:
        yield harness


def test_lifecycle_hooks(plugin):
    info = {"name": "Lead Insights", "version": "1.0.0"}
    assert plugin.call("plugin_installed", plugin_info=info)["status"] == "success"
    assert plugin.call("plugin_enabled")["message"] == "lead-insights enabled"
    assert plugin.call("plugin_disabled")["message"] == "lead-insights disabled"
    assert plugin.call("plugin_uninstalled") == {"status": "success"}


def test_lead_scores_hot_with_full_details(plugin):
    result = plugin.call("lead_created", lead=LEAD)
    assert result["score"] == 85
    assert result["tier"] == "hot"
    assert result["follow_up"] is True
    assert result["crm_sync"] is False  # no API key configured


def test_lead_with_api_key_is_marked_for_crm_sync():
    with PluginHarness(PLUGIN, settings={"api_key": "k-123"}) as plugin:
        assert plugin.call("lead_created", lead=LEAD)["crm_sync"] is True


def test_bare_lead_is_cold(plugin):
    result = plugin.call("lead_created", lead={"id": "l2"})
    assert (result["score"], result["tier"], result["follow_up"]) == (10, "cold", False)


def test_threshold_setting_changes_the_tier():
    with PluginHarness(PLUGIN, settings={"min_score": 20}) as plugin:
        assert plugin.call("lead_created", lead={"id": "l3", "email": "x@gmail.com"})["tier"] == "hot"


def test_booking_created_reports_duration(plugin):
    result = plugin.call("booking_created", booking=BOOKING)
    assert result["duration_minutes"] == 90
    assert "Consultation" in result["message"]


def test_booking_updated_lists_changes(plugin):
    after = {**BOOKING, "status": "cancelled"}
    result = plugin.call("booking_updated", booking=after, previous_state=BOOKING)
    assert result["changes"] == ["status: pending -> cancelled"]
    assert result["cancelled"] is True


def test_dashboard_widget_summarises_recent_scores(plugin):
    recent = [{"hook": "lead_created", "result": {"score": s}} for s in (90, 30, 60)]
    widget = plugin.call("dashboard_widget", context=plugin.context(recent_results=recent))
    assert widget["title"] == "Lead Insights"
    assert widget["refresh_interval"] == 60
    assert ">3<" in widget["html"]  # three leads scored
    assert ">2<" in widget["html"]  # two at or above the default threshold of 60
    assert ">60<" in widget["html"]  # average


def test_settings_page_never_shows_the_api_key():
    with PluginHarness(PLUGIN, settings={"api_key": "super-secret"}) as plugin:
        page = plugin.call("settings_page")
    assert "configured" in page
    assert "super-secret" not in page


def test_data_export_scores_records_and_filters(plugin):
    records = [LEAD, {"id": "l9"}]
    rows = plugin.call(
        "data_export",
        export_type="leads",
        start_date=None,
        end_date=None,
        filters={"min_score": 50},
        context=plugin.context(records=records),
    )
    assert rows == [{"lead_id": "l1", "score": 85, "tier": "hot"}]
    assert (
        plugin.call("data_export", export_type="bookings", start_date=None, end_date=None, filters={}) == []
    )
