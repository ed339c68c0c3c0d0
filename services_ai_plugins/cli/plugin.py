"""``services-ai plugin ...``: everything an administrator or a plugin author does with a plugin."""

from __future__ import annotations

from pathlib import Path

import click

from services_ai_plugins.cli.common import actor, host_from_env
from services_ai_plugins.cli.output import emit_json, say, table, warn, yes_no
from services_ai_plugins.lifecycle import archive, scaffold
from services_ai_plugins.lifecycle.registry import ChangeReport, PluginView

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group()
def plugin() -> None:
    """Install, configure and manage plugins."""


def _report(report: ChangeReport, as_json: bool, message: str) -> None:
    for warning in report.warnings:
        warn(warning)
    if as_json:
        emit_json(report.plugin)
    else:
        say(message)


def _permissions_text(view: PluginView) -> str:
    if not view.permissions:
        return "-"
    return ", ".join(f"{name}{'' if granted else ' (off)'}" for name, granted in view.permissions.items())


# -- authoring ------------------------------------------------------------------------------


@plugin.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to create the plugin in.",
)
@click.option(
    "--style",
    type=click.Choice(["functions", "class"]),
    default="functions",
    show_default=True,
    help="Module-level hook functions, or a class named by plugin_class.",
)
def plugin_new(name: str, parent: Path, style: str) -> None:
    """Scaffold a working plugin called NAME, with a test."""
    folder = scaffold.create(name, parent, style=style)
    say(f"created {folder}")
    say(f"next: services-ai plugin validate {folder} && python -m pytest {folder}")


@plugin.command("validate")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@JSON
def plugin_validate(path: Path, as_json: bool) -> None:
    """Run every install check on a ZIP or folder without installing it."""
    manifest = host_from_env().registry.validate(path)
    if as_json:
        emit_json(
            {
                "valid": True,
                "id": manifest.plugin_id,
                "version": manifest.version,
                "hooks": manifest.hooks,
                "permissions": manifest.permission_names,
            }
        )
    else:
        say(f"valid: {manifest.plugin_id} {manifest.version} (hooks: {', '.join(manifest.hooks) or 'none'})")


@plugin.command("package")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="ZIP to write (default: <id>-<version>.zip in the current folder).",
)
def plugin_package(folder: Path, output: Path | None) -> None:
    """Package a plugin folder as a ZIP, after validating it."""
    host = host_from_env()
    manifest = host.registry.validate(folder)
    data = archive.package_dir(folder, host.registry.limits)
    target = output or Path(f"{manifest.plugin_id}-{manifest.version}.zip")
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    say(f"wrote {target} ({len(data)} bytes, sha256 {archive.sha256_hex(data)[:12]})")


# -- lifecycle ------------------------------------------------------------------------------


@plugin.command("install")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@JSON
def plugin_install(path: Path, as_json: bool) -> None:
    """Install a plugin from a ZIP or a folder (disabled, every permission off)."""
    report = host_from_env().registry.install(path, actor=actor())
    p = report.plugin
    _report(report, as_json, f"installed {p.id} {p.version} (disabled; permissions: {_permissions_text(p)})")


@plugin.command("upgrade")
@click.argument("plugin_id")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@JSON
def plugin_upgrade(plugin_id: str, path: Path, as_json: bool) -> None:
    """Replace PLUGIN_ID's code with a newer version (settings and grants kept)."""
    report = host_from_env().registry.upgrade(plugin_id, path, actor=actor())
    _report(report, as_json, f"upgraded {plugin_id} to {report.plugin.version}")


@plugin.command("rollback")
@click.argument("plugin_id")
@JSON
def plugin_rollback(plugin_id: str, as_json: bool) -> None:
    """Go back to the version installed before the current one."""
    report = host_from_env().registry.rollback(plugin_id, actor=actor())
    _report(report, as_json, f"rolled {plugin_id} back to {report.plugin.version}")


@plugin.command("enable")
@click.argument("plugin_id")
@JSON
def plugin_enable(plugin_id: str, as_json: bool) -> None:
    """Enable a plugin."""
    report = host_from_env().registry.enable(plugin_id, actor=actor())
    _report(report, as_json, f"enabled {plugin_id}")


@plugin.command("disable")
@click.argument("plugin_id")
@JSON
def plugin_disable(plugin_id: str, as_json: bool) -> None:
    """Disable a plugin (its settings and grants are kept)."""
    report = host_from_env().registry.disable(plugin_id, actor=actor())
    _report(report, as_json, f"disabled {plugin_id}")


@plugin.command("grant")
@click.argument("plugin_id")
@click.argument("permission")
@JSON
def plugin_grant(plugin_id: str, permission: str, as_json: bool) -> None:
    """Grant a permission the plugin declares."""
    report = host_from_env().registry.grant(plugin_id, permission, actor=actor())
    _report(report, as_json, f"granted {permission} to {plugin_id}")


@plugin.command("revoke")
@click.argument("plugin_id")
@click.argument("permission")
@JSON
def plugin_revoke(plugin_id: str, permission: str, as_json: bool) -> None:
    """Revoke a permission."""
    report = host_from_env().registry.revoke(plugin_id, permission, actor=actor())
    _report(report, as_json, f"revoked {permission} from {plugin_id}")


@plugin.command("uninstall")
@click.argument("plugin_id")
@click.option("--purge", is_flag=True, help="Also delete its stored hook results and export rows.")
@JSON
def plugin_uninstall(plugin_id: str, purge: bool, as_json: bool) -> None:
    """Remove a plugin: its code, permissions and settings (results kept unless --purge)."""
    report = host_from_env().registry.uninstall(plugin_id, actor=actor(), purge=purge)
    _report(report, as_json, f"uninstalled {plugin_id} {report.plugin.version}")


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
                    _setting_text(s),
                    yes_no(s["required"]),
                    s["description"],
                )
                for s in p.settings
            ],
        )
    table(
        "versions",
        ["version", "current", "uploaded", "sha256"],
        [
            (v.version, yes_no(v.current), f"{v.uploaded_at:%Y-%m-%d %H:%M}", v.sha256[:12])
            for v in p.versions or []
        ],
    )


def _setting_text(s: dict[str, object]) -> str:
    if s["secret"]:
        return "(set)" if s["is_set"] else "(not set)"
    value = s["value"]
    text = "" if value is None else str(value)
    return text if s["is_set"] else f"{text} (default)" if text else "(not set)"


# -- settings -------------------------------------------------------------------------------


@plugin.group("config")
def config() -> None:
    """Read and change a plugin's settings."""


@config.command("get")
@click.argument("plugin_id")
@click.argument("name", required=False)
@JSON
def config_get(plugin_id: str, name: str | None, as_json: bool) -> None:
    """Show settings (secrets are never shown in clear)."""
    rows = host_from_env().registry.get_settings(plugin_id)
    if name is not None:
        rows = [r for r in rows if r["name"] == name]
        if not rows:
            from schemas.errors import FieldError
            from services_ai_plugins.errors import SettingsError

            raise SettingsError(plugin_id, [FieldError(name, "is not a setting of this plugin")])
    if as_json:
        emit_json({r["name"]: r["value"] for r in rows} if name is None else rows[0]["value"])
    elif name is not None:
        say(_setting_text(rows[0]))
    else:
        table(None, ["name", "type", "value"], [(r["name"], r["type"], _setting_text(r)) for r in rows])


@config.command("set")
@click.argument("plugin_id")
@click.argument("name")
@click.argument("value")
@JSON
def config_set(plugin_id: str, name: str, value: str, as_json: bool) -> None:
    """Set one setting; VALUE is parsed by the setting's type (number, true/false, option)."""
    report = host_from_env().registry.set_settings(plugin_id, {name: value}, actor=actor(), from_text=True)
    _report(report, as_json, f"set {plugin_id} {name}")


@config.command("unset")
@click.argument("plugin_id")
@click.argument("name")
def config_unset(plugin_id: str, name: str) -> None:
    """Remove a stored value (the default applies again)."""
    host_from_env().registry.unset_setting(plugin_id, name, actor=actor())
    say(f"unset {plugin_id} {name}")
