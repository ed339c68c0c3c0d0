"""``services-ai plugin ...``: what an administrator does with an installed plugin (authoring
commands are in ``authoring.py``, settings in ``plugin_config.py``)."""

from __future__ import annotations

from pathlib import Path

import click

from services_ai_plugins.cli.common import JSON, actor, host_from_env
from services_ai_plugins.cli.output import emit_json, report, say, setting_text, table, warn, yes_no
from services_ai_plugins.lifecycle.views import PluginView

__all__ = ["COMMANDS", "plugin"]


@click.group()
def plugin() -> None:
    """Install, configure and manage plugins."""


def _permissions_text(view: PluginView) -> str:
    if not view.permissions:
        return "-"
    return ", ".join(f"{name}{'' if granted else ' (off)'}" for name, granted in view.permissions.items())


# -- lifecycle ------------------------------------------------------------------------------


@plugin.command("install")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@JSON
def plugin_install(path: Path, as_json: bool) -> None:
    """Install a plugin from a ZIP or a folder (disabled, every permission off)."""
    result = host_from_env().registry.install(path, actor=actor())
    p = result.plugin
    report(result, as_json, f"installed {p.id} {p.version} (disabled; permissions: {_permissions_text(p)})")


@plugin.command("upgrade")
@click.argument("plugin_id")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@JSON
def plugin_upgrade(plugin_id: str, path: Path, as_json: bool) -> None:
    """Replace PLUGIN_ID's code with a newer version (settings and grants kept)."""
    result = host_from_env().registry.upgrade(plugin_id, path, actor=actor())
    report(result, as_json, f"upgraded {plugin_id} to {result.plugin.version}")


@plugin.command("rollback")
@click.argument("plugin_id")
@JSON
def plugin_rollback(plugin_id: str, as_json: bool) -> None:
    """Go back to the version installed before the current one."""
    result = host_from_env().registry.rollback(plugin_id, actor=actor())
    report(result, as_json, f"rolled {plugin_id} back to {result.plugin.version}")


@plugin.command("enable")
@click.argument("plugin_id")
@JSON
def plugin_enable(plugin_id: str, as_json: bool) -> None:
    """Enable a plugin."""
    result = host_from_env().registry.enable(plugin_id, actor=actor())
    report(result, as_json, f"enabled {plugin_id}")


@plugin.command("disable")
@click.argument("plugin_id")
@JSON
def plugin_disable(plugin_id: str, as_json: bool) -> None:
    """Disable a plugin (its settings and grants are kept)."""
    result = host_from_env().registry.disable(plugin_id, actor=actor())
    report(result, as_json, f"disabled {plugin_id}")


@plugin.command("grant")
@click.argument("plugin_id")
@click.argument("permission")
@JSON
def plugin_grant(plugin_id: str, permission: str, as_json: bool) -> None:
    """Grant a permission the plugin declares."""
    result = host_from_env().registry.grant(plugin_id, permission, actor=actor())
    report(result, as_json, f"granted {permission} to {plugin_id}")


@plugin.command("revoke")
@click.argument("plugin_id")
@click.argument("permission")
@JSON
def plugin_revoke(plugin_id: str, permission: str, as_json: bool) -> None:
    """Revoke a permission."""
    result = host_from_env().registry.revoke(plugin_id, permission, actor=actor())
    report(result, as_json, f"revoked {permission} from {plugin_id}")


@plugin.command("uninstall")
@click.argument("plugin_id")
@click.option("--purge", is_flag=True, help="Also delete its stored hook results and export rows.")
@JSON
def plugin_uninstall(plugin_id: str, purge: bool, as_json: bool) -> None:
    """Remove a plugin: its code, permissions and settings (results kept unless --purge)."""
    result = host_from_env().registry.uninstall(plugin_id, actor=actor(), purge=purge)
    report(result, as_json, f"uninstalled {plugin_id} {result.plugin.version}")


@plugin.command("discover")
def plugin_discover() -> None:
    """Register pip-installed plugins (entry-point group services_ai.plugins)."""
    added, problems = host_from_env().registry.sync_entry_points(actor=actor())
    for problem in problems:
        warn(problem)
    say(f"discovered {len(added)} new plugin(s){': ' + ', '.join(added) if added else ''}")


# -- reading --------------------------------------------------------------------------------


@plugin.command("list")
@JSON
def plugin_list(as_json: bool) -> None:
    """List installed plugins."""
    plugins = host_from_env().registry.plugins()
    if as_json:
        emit_json(plugins)
        return
    if not plugins:
        say("no plugins installed (services-ai plugin install PATH)")
        return
    table(
        None,
        ["id", "name", "version", "enabled", "permissions", "hooks"],
        [(p.id, p.name, p.version, yes_no(p.enabled), _permissions_text(p), len(p.hooks)) for p in plugins],
    )


@plugin.command("show")
@click.argument("plugin_id")
@JSON
def plugin_show(plugin_id: str, as_json: bool) -> None:
    """Show one plugin: information, permissions, settings, versions."""
    p = host_from_env().registry.show(plugin_id)
    if as_json:
        emit_json(p)
        return
    say(f"{p.name} ({p.id}) {p.version} by {p.author} <{p.email}>")
    say(p.description)
    say(f"enabled: {yes_no(p.enabled)}" + (f" ({p.disabled_reason})" if p.disabled_reason else ""))
    say(
        f"source: {p.source}; installed {p.installed_at:%Y-%m-%d %H:%M}; "
        f"updated {p.updated_at:%Y-%m-%d %H:%M}"
    )
    say(f"hooks: {', '.join(p.hooks) or 'none'}")
    table(
        "permissions",
        ["permission", "granted", "description"],
        [(d["name"], yes_no(d["granted"]), d["description"]) for d in p.permission_details or []],
    )
    if p.settings:
        table(
            "settings",
            ["name", "type", "value", "required", "description"],
            [
                (
                    s["name"],
                    s["type"] + (" (secret)" if s["secret"] else ""),
                    setting_text(s),
                    yes_no(s["required"]),
                    s["description"],
                )
                for s in p.settings
            ],
        )
    for kind, problem in (p.problems or {}).items():
        warn(f"{kind} problem seen by a worker ({problem['last_seen'][:19]}): {problem['reason']}")
    table(
        "versions",
        ["version", "current", "uploaded", "sha256"],
        [
            (v.version, yes_no(v.current), f"{v.uploaded_at:%Y-%m-%d %H:%M}", v.sha256[:12])
            for v in p.versions or []
        ],
    )


def _register() -> None:
    from services_ai_plugins.cli import authoring, plugin_config

    for command in (*authoring.COMMANDS, plugin_config.config):
        plugin.add_command(command)


COMMANDS = (plugin,)
_register()
