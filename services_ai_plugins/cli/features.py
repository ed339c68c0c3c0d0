"""``services-ai widgets`` and ``services-ai export``: what the dashboard shows, and exports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from services_ai_plugins.cli.common import JSON, actor, host_from_env, load_json, progress
from services_ai_plugins.cli.output import emit_json, err, say, table, warn
from services_ai_plugins.errors import InputError
from services_ai_plugins.features.exports import FORMATS, ExportService
from services_ai_plugins.infra.broker import refuse_in_process_broker

__all__ = ["COMMANDS"]


@click.group(invoke_without_command=True)
@JSON
@click.pass_context
def widgets(ctx: click.Context, as_json: bool) -> None:
    """Dashboard widget snapshots (what the dashboard shows)."""
    if ctx.invoked_subcommand is not None:
        return
    snaps = host_from_env().widgets.snapshots()
    if as_json:
        emit_json(snaps)
        return
    if not snaps:
        say("no widget snapshots yet (services-ai widgets refresh)")
        return
    table(
        None,
        ["plugin", "title", "status", "rendered", "refresh (s)", "stale since", "error"],
        [
            (
                w["plugin_id"],
                w["title"],
                w["status"],
                (w["rendered_at"] or "-")[:19],
                w["refresh_interval"],
                (w["stale_since"] or "")[:19],
                w["error"] or "",
            )
            for w in snaps
        ],
    )


@widgets.command("refresh")
@click.argument("plugin_id", required=False)
@JSON
def widgets_refresh(plugin_id: str | None, as_json: bool) -> None:
    """Render widgets now, here, without waiting for the schedule (all, or one plugin's).
    Exits non-zero when a widget fails to render."""
    host = host_from_env()
    try:
        out = (
            [host.widgets.refresh(plugin_id, actor=actor())]
            if plugin_id is not None
            else host.widgets.refresh_all(actor=actor())
        )
    finally:
        host.close()
    if as_json:
        emit_json(out)
    else:
        for snap in out:
            say(f"{snap['plugin_id']}: {snap['status']}" + (f" ({snap['error']})" if snap["error"] else ""))
        if not out:
            say("no plugin has a widget to render")
    if any(not snap["ok"] for snap in out):
        sys.exit(1)


@click.group()
def export() -> None:
    """Data exports: plugins' rows for a type and date range, as CSV or JSON."""


def _filters(items: tuple[str, ...], raw: str | None) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if raw:
        loaded = load_json(raw, "--filters")
        if not isinstance(loaded, dict):
            raise InputError("--filters", "must be a JSON object")
        filters.update(loaded)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError("--filter", f"{item!r} is not KEY=VALUE")
        try:
            filters[key] = json.loads(value)
        except ValueError:
            filters[key] = value
    return filters


@export.command("run")
@click.argument("export_type")
@click.option("--since", default=None, help="First day, included (YYYY-MM-DD).")
@click.option("--until", default=None, help="Last day, included (YYYY-MM-DD).")
@click.option("--filter", "filter_items", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("--filters", "filters_json", default=None, help="Filters as a JSON object.")
@click.option("--queue", "queued", is_flag=True, help="Run on an exports worker instead of here.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the rows here."
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
def export_run(
    export_type: str,
    since: str | None,
    until: str | None,
    filter_items: tuple[str, ...],
    filters_json: str | None,
    queued: bool,
    output: Path | None,
    fmt: str,
) -> None:
    """Run an export (e.g. leads, bookings) and print its id."""
    host = host_from_env()
    export_id = host.exports.create(export_type, since, until, _filters(filter_items, filters_json), actor())
    if queued:
        refuse_in_process_broker(host.config, "export run --queue")
        host.tasks.run_export(export_id)
        click.echo(export_id)
        return
    with progress(f"export {export_type}") as bar:
        task = bar.add_task("plugins", total=None)
        job = host.exports.run(export_id, progress=lambda n, t: bar.update(task, completed=n, total=t))
    host.close()
    for plugin_id, entry in job["plugins"].items():
        if entry["status"] != "success":
            warn(f"{plugin_id}: {entry['status']}: {entry['error']}")
    if job["error"]:
        warn(job["error"])
    if output is not None:
        _download(host.exports, export_id, output, fmt)
    click.echo(export_id)


def _download(service: ExportService, export_id: str, output: Path | None, fmt: str) -> None:
    if output is None:
        service.write(export_id, sys.stdout, fmt)
        return
    job = service.get(export_id)
    tmp = output.with_name(output.name + ".part")
    with progress(f"writing {output.name}") as bar, tmp.open("w", encoding="utf-8", newline="") as fh:
        task = bar.add_task("rows", total=job["row_count"])
        n = service.write(export_id, fh, fmt, progress=lambda done, _t: bar.update(task, completed=done))
    tmp.replace(output)
    err.print(f"wrote {n} row(s) to {output}", markup=False, highlight=False)


@export.command("download")
@click.argument("export_id")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default stdout)."
)
def export_download(export_id: str, fmt: str, output: Path | None) -> None:
    """Write a finished export as CSV or JSON."""
    _download(host_from_env().exports, export_id, output, fmt)


@export.command("show")
@click.argument("export_id")
@JSON
def export_show(export_id: str, as_json: bool) -> None:
    """An export's state and each plugin's contribution."""
    job = host_from_env().exports.get(export_id)
    if as_json:
        emit_json(job)
        return
    say(
        f"export {job['id']}: {job['export_type']} {job['start_date'] or '...'} to {job['end_date'] or '...'}"
        f" - {job['status']}, {job['row_count']} row(s)"
    )
    table(
        None,
        ["plugin", "status", "rows", "error"],
        [(p, e["status"], e["rows"], e["error"] or "") for p, e in job["plugins"].items()],
    )


@export.command("list")
@JSON
def export_list(as_json: bool) -> None:
    """Recent exports."""
    jobs = host_from_env().exports.recent()
    if as_json:
        emit_json(jobs)
        return
    table(
        None,
        ["id", "type", "status", "rows", "created"],
        [(j["id"], j["export_type"], j["status"], j["row_count"], j["created_at"][:19]) for j in jobs],
    )


COMMANDS = (widgets, export)
