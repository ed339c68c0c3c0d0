"""``services-ai plugin new|validate|package``: what a plugin author does before installing."""

from __future__ import annotations

from pathlib import Path

import click

from services_ai_plugins.cli.common import JSON, host_from_env
from services_ai_plugins.cli.output import emit_json, say
from services_ai_plugins.lifecycle import archive, packaging, scaffold

__all__ = ["COMMANDS"]


@click.command("new")
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


@click.command("validate")
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


@click.command("package")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="ZIP to write (default: <id>-<version>.zip in the current folder).",
)
def plugin_package(folder: Path, output: Path | None) -> None:
    """Package a plugin folder as a ZIP, after validating it."""
    registry = host_from_env().registry
    manifest = registry.validate(folder)
    data = packaging.package_dir(folder, registry.limits)
    target = output or Path(f"{manifest.plugin_id}-{manifest.version}.zip")
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    say(f"wrote {target} ({len(data)} bytes, sha256 {archive.sha256_hex(data)[:12]})")


COMMANDS = (plugin_new, plugin_validate, plugin_package)
