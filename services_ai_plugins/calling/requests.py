"""What each hook is given: the arguments and per-call context entries, as plain JSON data.

The worker, the registry, the widget and export services and ``PluginHarness`` all build their
calls here, so a plugin sees the same shapes in its own tests as in production. Which of these
a plugin may see at all is decided by the permission gate; :func:`covered` drops, as a second
line, any argument its grants do not cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services_ai_plugins.calling.executor import Call
from services_ai_plugins.calling.permissions import effective
from services_ai_plugins.calling.redaction import PersonalValues

__all__ = [
    "ARGUMENT_PERMISSIONS",
    "covered",
    "event_call",
    "event_redactions",
    "export_call",
    "idempotency_key",
    "lifecycle_call",
    "settings_page_call",
    "widget_call",
]

#: The data each argument carries, and the permission that covers it.
ARGUMENT_PERMISSIONS: dict[str, str] = {
    "lead": "lead_access",
    "booking": "booking_access",
    "previous_state": "booking_access",
}


def idempotency_key(event_id: str, plugin_id: str, hook: str) -> str:
    """The same on every delivery of an event: plugins use it to de-duplicate side effects."""
    return f"{event_id}:{plugin_id}:{hook}"


def event_call(
    hook: str,
    plugin_id: str,
    data: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    meta: Mapping[str, Any],
    redact: Iterable[str] = (),
) -> Call:
    """``lead_created(lead, context)``, ``booking_created(booking, context)``,
    ``booking_updated(booking, previous_state, context)``. ``meta`` is the event's
    ``{event_id, type, occurred_at, source, attempt}``."""
    if hook == "lead_created":
        args: dict[str, Any] = {"lead": data}
    else:
        args = {"booking": data}
        if hook == "booking_updated":
            args["previous_state"] = previous
    context = {"event": meta, "idempotency_key": idempotency_key(meta["event_id"], plugin_id, hook)}
    return Call(args, context, redact)


def event_redactions(data: Mapping[str, Any], previous: Mapping[str, Any] | None) -> PersonalValues:
    """The personal data of an event, to keep out of its stored errors (read when needed)."""
    return PersonalValues(data, previous)


def widget_call(plugin_id: str, recent_results: list[dict[str, Any]], user: str | None = None) -> Call:
    """``dashboard_widget(plugin_id, context)`` with the plugin's own latest results."""
    return Call({"plugin_id": plugin_id}, {"recent_results": recent_results, "user": user})


def settings_page_call(plugin_id: str, user: str | None = None) -> Call:
    return Call({"plugin_id": plugin_id}, {"user": user})


def lifecycle_call(
    plugin_id: str, plugin_info: Mapping[str, Any] | None = None, user: str | None = None
) -> Call:
    """``plugin_installed(plugin_id, plugin_info, context)`` and the other lifecycle hooks."""
    args: dict[str, Any] = {"plugin_id": plugin_id}
    if plugin_info is not None:
        args["plugin_info"] = plugin_info
    return Call(args, {"user": user})


def export_call(
    export_type: str,
    start_date: str | None,
    end_date: str | None,
    filters: Mapping[str, Any],
    records: list[dict[str, Any]],
    user: str | None = None,
) -> Call:
    """``data_export(export_type, data_type, start_date, end_date, filters, context)``;
    ``data_type`` is the plan seed's name for the export type. The platform's records of the
    export's type in the date range are ``context["records"]``."""
    args = {
        "export_type": export_type,
        "data_type": export_type,
        "start_date": start_date,
        "end_date": end_date,
        "filters": dict(filters),
    }
    return Call(args, {"records": records, "user": user})


def covered(calls: Sequence[Call], granted: Iterable[str]) -> list[Call]:
    """The calls without any argument whose data the plugin's grants do not cover."""
    have = effective(granted)
    denied = {name for name, permission in ARGUMENT_PERMISSIONS.items() if permission not in have}
    if not denied:
        return list(calls)
    return [
        c
        if denied.isdisjoint(c.args)
        else Call({k: v for k, v in c.args.items() if k not in denied}, c.context, c.redact)
        for c in calls
    ]
