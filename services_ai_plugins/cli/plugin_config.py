"""``services-ai plugin config get|set|unset``: a plugin's settings (secrets never shown)."""

from __future__ import annotations

import click

from services_ai_plugins.cli.common import JSON, actor, host_from_env
from services_ai_plugins.cli.output import emit_json, report, say, setting_text, table

__all__ = ["config"]


@click.group("config")
def config() -> None:
    """Read and change a plugin's settings."""


@config.command("get")
@click.argument("plugin_id")
@click.argument("name", required=False)
@JSON
def config_get(plugin_id: str, name: str | None, as_json: bool) -> None:
    """Show settings (secrets are never shown in clear)."""
    rows = host_from_env().registry.get_settings(plugin_id, name)
    if as_json:
        emit_json({r["name"]: r["value"] for r in rows} if name is None else rows[0]["value"])
    elif name is not None:
        say(setting_text(rows[0]))
    else:
        table(None, ["name", "type", "value"], [(r["name"], r["type"], setting_text(r)) for r in rows])


@config.command("set")
@click.argument("plugin_id")
@click.argument("name")
@click.argument("value")
@JSON
def config_set(plugin_id: str, name: str, value: str, as_json: bool) -> None:
    """Set one setting; VALUE is parsed by the setting's type (number, true/false, option)."""
    result = host_from_env().registry.set_settings(plugin_id, {name: value}, actor=actor(), from_text=True)
    report(result, as_json, f"set {plugin_id} {name}")


@config.command("unset")
@click.argument("plugin_id")
@click.argument("name")
def config_unset(plugin_id: str, name: str) -> None:
    """Remove a stored value (the default applies again)."""
    host_from_env().registry.unset_setting(plugin_id, name, actor=actor())
    say(f"unset {plugin_id} {name}")
