"""Which permission each hook needs, and the one gate every call goes through.

A plugin must declare a permission to be granted it; every permission starts disabled. The map
below is the only place that says what a hook needs; ``can_call`` is the only function that
decides whether a plugin is called.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from schemas.manifest import HOOK_NAMES, PERMISSION_NAMES

# hook -> permissions it needs (all of them). Lifecycle hooks and the admin-only settings page
# need none; they are called on the plugin concerned only.
HOOK_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "plugin_installed": (),
    "plugin_uninstalled": (),
    "plugin_enabled": (),
    "plugin_disabled": (),
    "settings_page": (),
    "lead_created": ("lead_access",),
    "booking_created": ("booking_access",),
    "booking_updated": ("booking_access",),
    "dashboard_widget": ("dashboard_widget",),
    "data_export": ("data_export",),
}

# The plan seed's names for the same grants.
ALIASES: dict[str, str] = {"read_leads": "lead_access", "read_bookings": "booking_access"}

# data_export also needs the access permission of the data it exports.
EXPORT_DATA_PERMISSIONS: dict[str, str] = {"leads": "lead_access", "bookings": "booking_access"}

LIFECYCLE_HOOKS = ("plugin_installed", "plugin_uninstalled", "plugin_enabled", "plugin_disabled")
EVENT_HOOKS: dict[str, str] = {
    "lead.created": "lead_created",
    "booking.created": "booking_created",
    "booking.updated": "booking_updated",
}

PERMISSION_DESCRIPTIONS: dict[str, str] = {
    "lead_access": "Receive lead events and lead data (name, email, phone, notes)",
    "booking_access": "Receive booking events and booking data",
    "dashboard_widget": "Show a widget on the dashboard",
    "data_export": "Contribute rows to data exports",
    "network": "Connect to other services over the network",
    "read_leads": "Receive lead events and lead data (alias of lead_access)",
    "read_bookings": "Receive booking events and booking data (alias of booking_access)",
    "create_bookings": "Create bookings on the platform",
}

assert set(HOOK_PERMISSIONS) == set(HOOK_NAMES), "every hook needs a row in HOOK_PERMISSIONS"
assert set(PERMISSION_DESCRIPTIONS) == set(PERMISSION_NAMES)


class Permitted(Protocol):
    """What the gate needs to know of a plugin."""

    @property
    def enabled(self) -> bool: ...

    @property
    def granted(self) -> frozenset[str]: ...


def effective(granted: Iterable[str]) -> frozenset[str]:
    """Granted permissions with aliases resolved (``read_leads`` also counts as ``lead_access``)."""
    out = set(granted)
    out.update(ALIASES[p] for p in list(out) if p in ALIASES)
    return frozenset(out)


def required_for(hook: str, export_type: str | None = None) -> tuple[str, ...]:
    """The permissions a call of ``hook`` needs."""
    needed = HOOK_PERMISSIONS[hook]
    if hook == "data_export" and export_type in EXPORT_DATA_PERMISSIONS:
        needed = (*needed, EXPORT_DATA_PERMISSIONS[export_type])
    return needed


def missing_for(granted: Iterable[str], hook: str, export_type: str | None = None) -> list[str]:
    have = effective(granted)
    return [p for p in required_for(hook, export_type) if p not in have]


def can_call(plugin: Permitted, hook: str, export_type: str | None = None) -> bool:
    """The single gate: may ``plugin`` be called for ``hook``?

    Event, widget and export hooks need the plugin enabled and its permissions granted.
    Lifecycle hooks and ``settings_page`` are called by the host on the plugin concerned
    whatever its state (they carry no platform data).
    """
    if hook not in HOOK_PERMISSIONS:
        return False
    if hook in LIFECYCLE_HOOKS or hook == "settings_page":
        return True
    return plugin.enabled and not missing_for(plugin.granted, hook, export_type)
