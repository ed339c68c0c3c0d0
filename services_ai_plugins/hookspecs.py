"""The hooks a plugin can implement. Only specifications live here, one per hook.

Each spec takes the union of the arguments both seeds give it; Pluggy lets an implementation
accept any subset, so ``def lead_created(lead)`` and ``def lead_created(self, lead, context)``
both register. Arguments a seed did not have (``context`` on lifecycle hooks, ``data_type`` as
the plan seed's name for ``export_type``) only add to what a plugin may ask for.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "services_ai"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def plugin_installed(plugin_id: str, plugin_info: dict[str, Any], context: dict[str, Any]) -> Any:
    """Called on this plugin once, when it is installed (before the install is committed)."""


@hookspec
def plugin_uninstalled(plugin_id: str, context: dict[str, Any]) -> Any:
    """Called on this plugin when it is uninstalled."""


@hookspec
def plugin_enabled(plugin_id: str, context: dict[str, Any]) -> Any:
    """Called on this plugin when an administrator enables it."""


@hookspec
def plugin_disabled(plugin_id: str, context: dict[str, Any]) -> Any:
    """Called on this plugin when an administrator disables it."""


@hookspec
def lead_created(lead: dict[str, Any], context: dict[str, Any]) -> Any:
    """A lead was created; return a JSON-serialisable result."""


@hookspec
def booking_created(booking: dict[str, Any], context: dict[str, Any]) -> Any:
    """A booking was created; return a JSON-serialisable result."""


@hookspec
def booking_updated(booking: dict[str, Any], previous_state: dict[str, Any], context: dict[str, Any]) -> Any:
    """A booking changed; ``previous_state`` is the booking as it was."""


@hookspec
def dashboard_widget(plugin_id: str, context: dict[str, Any]) -> Any:
    """Return widget HTML, or ``{"html", "title", "refresh_interval"}``."""


@hookspec
def settings_page(plugin_id: str, context: dict[str, Any]) -> Any:
    """Return HTML for the plugin's own settings page (shown to administrators only)."""


@hookspec
def data_export(
    export_type: str,
    data_type: str,
    start_date: str | None,
    end_date: str | None,
    filters: dict[str, Any],
    context: dict[str, Any],
) -> Any:
    """Return the rows (a list of flat JSON objects) of an export; ``data_type`` = ``export_type``."""
