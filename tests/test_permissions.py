"""The hook -> permission table and the single gate, can_call."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from schemas.manifest import HOOK_NAMES
from services_ai_plugins.calling.permissions import HOOK_PERMISSIONS, can_call, effective, required_for


@dataclass(frozen=True)
class P:
    enabled: bool
    granted: frozenset[str]


def test_every_hook_has_a_row() -> None:
    assert set(HOOK_PERMISSIONS) == set(HOOK_NAMES)


@pytest.mark.parametrize(
    ("hook", "granted", "expected"),
    [
        ("lead_created", {"lead_access"}, True),
        ("lead_created", {"read_leads"}, True),
        ("lead_created", {"booking_access"}, False),
        ("lead_created", set(), False),
        ("booking_created", {"booking_access"}, True),
        ("booking_updated", {"read_bookings"}, True),
        ("booking_updated", {"lead_access"}, False),
        ("dashboard_widget", {"dashboard_widget"}, True),
        ("dashboard_widget", {"lead_access"}, False),
        ("data_export", {"data_export"}, True),
        ("data_export", set(), False),
        ("settings_page", set(), True),
        ("plugin_installed", set(), True),
    ],
)
def test_can_call(hook: str, granted: set[str], expected: bool) -> None:
    assert can_call(P(True, frozenset(granted)), hook) is expected


def test_disabled_plugins_are_never_called_for_data() -> None:
    everything = frozenset(["lead_access", "booking_access", "dashboard_widget", "data_export"])
    for hook in ("lead_created", "booking_created", "booking_updated", "dashboard_widget", "data_export"):
        assert not can_call(P(False, everything), hook)


def test_exports_of_personal_data_need_the_data_permission_too() -> None:
    assert required_for("data_export", "leads") == ("data_export", "lead_access")
    assert not can_call(P(True, frozenset({"data_export"})), "data_export", "leads")
    assert can_call(P(True, frozenset({"data_export", "read_leads"})), "data_export", "leads")
    assert can_call(P(True, frozenset({"data_export"})), "data_export", "summary")


def test_unknown_hooks_are_never_callable() -> None:
    assert not can_call(P(True, frozenset({"lead_access"})), "lead_deleted")


def test_aliases_resolve() -> None:
    assert effective({"read_leads"}) == {"read_leads", "lead_access"}
