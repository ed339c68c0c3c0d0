"""Commands of the event pipeline: publish, events, dlq, replay, widgets, export, status,
worker, beat and demo."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from services_ai_plugins.cli.common import actor, host_from_env
from services_ai_plugins.cli.output import emit_json, err, say, table, warn
from services_ai_plugins.errors import ServicesAIError

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
EVENT_KINDS = {
    "lead-created": "lead.created",
    "booking-created": "booking.created",
    "booking-updated": "booking.updated",
}


class InputError(ServicesAIError):
    exit_code = 65


def _load_json(value: str, what: str) -> Any:
    """``--data``: JSON text, ``@file``, or ``-`` for standard input."""
    from schemas.errors import ContractError
    from schemas.jsonload import strict_json_loads

    if value == "-":
        raw: str | bytes = sys.stdin.read()
    elif value.startswith("@"):
        path = Path(value[1:])
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{what}: cannot read {path}: {exc.strerror}") from None
    else:
        raw = value
    try:
        return strict_json_loads(raw, what)
    except ContractError as exc:
        raise InputError(str(exc)) from None


def _since(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{what}: {value!r} is not a date or time (YYYY-MM-DD[THH:MM[+00:00]])") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _progress(description: str) -> Progress:
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


# -- publish --------------------------------------------------------------------------------


@click.command()
@click.argument("kind", type=click.Choice(sorted(EVENT_KINDS)))
@click.option("--data", "data", required=True, help="The event's data: JSON, @file, or - for stdin.")
@click.option("--source", default="cli", show_default=True, help="Who publishes (the envelope's source).")
@click.option("--event-id", default=None, help="Use this event id (default: a new UUID).")
def publish(kind: str, data: str, source: str, event_id: str | None) -> None:
    """Publish an event; prints its id alone on standard output."""
    from services_ai_plugins.publisher import publish as send

    payload = _load_json(data, "--data")
    envelope: dict[str, Any] = {"type": EVENT_KINDS[kind], "data": payload, "source": source}
    if event_id:
        envelope["event_id"] = event_id
    click.echo(send(envelope))


# -- events ---------------------------------------------------------------------------------


@click.group()
def events() -> None:
    """Stored events and their results."""


@events.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--type", "event_type", type=click.Choice(sorted(EVENT_KINDS.values())))
@click.option("--status", type=click.Choice(["done", "pending", "failed"]))
@JSON
def events_list(limit: int, event_type: str | None, status: str | None, as_json: bool) -> None:
    """The latest events."""
    from services_ai_plugins.pipeline.events import EventService

    rows = EventService(host_from_env()).recent(limit=limit, event_type=event_type, status=status)
    if as_json:
        emit_json(rows)
        return
    table(
        None,
        ["event id", "type", "source", "occurred", "status", "failed results"],
        [
            (r["event_id"], r["type"], r["source"], r["occurred_at"][:19], r["status"], r["failures"])
            for r in rows
        ],
    )


@events.command("show")
@click.argument("event_id")
@JSON
def events_show(event_id: str, as_json: bool) -> None:
    """One event and the result of each plugin called for it."""
    from services_ai_plugins.pipeline.events import EventService

    view = EventService(host_from_env()).show(event_id)
    if as_json:
        emit_json(view)
        return
    say(f"{view['event_id']}  {view.get('type')}  status: {view['status']}")
    if "dead_letter" in view:
        say(f"dead letter #{view['dead_letter']['id']}: {view['dead_letter']['reason']}")
        return
    table(
        "results",
        ["plugin", "hook", "status", "ms", "result / error"],
        [
            (
                r["plugin_id"],
                r["hook"],
                r["status"],
                f"{r['duration_ms']:.1f}",
                r["error"] or json.dumps(r["result"])[:120],
            )
            for r in view["results"]
        ],
    )


# -- dead letters ---------------------------------------------------------------------------


@click.group()
def dlq() -> None:
    """The dead-letter store: events that could not be processed."""


@dlq.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="Include replayed ones.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@JSON
def dlq_list(include_replayed: bool, limit: int, as_json: bool) -> None:
    """Dead letters, newest first."""
    from services_ai_plugins.pipeline.events import EventService

    rows = EventService(host_from_env()).dead_letters(limit=limit, include_replayed=include_replayed)
    if as_json:
        emit_json(rows)
        return
    table(
        None,
        ["id", "event id", "type", "stage", "when", "reason"],
        [
            (r["id"], r["event_id"], r["event_type"], r["stage"], r["created_at"][:19], r["reason"][:100])
            for r in rows
        ],
    )


@dlq.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter not yet replayed.")
def dlq_replay(ids: tuple[int, ...], replay_all: bool) -> None:
    """Publish dead letters again (fixed since, or failed for a reason now gone)."""
    from services_ai_plugins.pipeline.events import EventService
    from services_ai_plugins.publisher import publish as send

    if not ids and not replay_all:
        raise click.UsageError("give dead-letter ids, or --all")
    results = EventService(host_from_env()).replay_dead(None if replay_all else ids, send)
    failed = 0
    for letter_id, event_id, error in results:
        if error:
            failed += 1
            warn(f"dead letter {letter_id} not replayed: {error}")
        else:
            say(f"dead letter {letter_id} replayed as event {event_id}")
    if failed:
        sys.exit(1)


@click.command()
@click.option("--plugin", "plugin_id", required=True, help="The plugin to call.")
@click.option("--since", required=True, help="Events that occurred at or after (YYYY-MM-DD[THH:MM]).")
@click.option("--until", default=None, help="...and before.")
@click.option("--failed", "include_failed", is_flag=True, help="Also re-run events it failed on.")
@click.option("--now", "inline", is_flag=True, help="Run here, with a progress bar, not on a worker.")
def replay(plugin_id: str, since: str, until: str | None, include_failed: bool, inline: bool) -> None:
    """Backfill one plugin: call it for stored events it has no result for."""
    since_dt = _since(since, "--since")
    until_dt = _since(until, "--until")
    assert since_dt is not None
    host = host_from_env()
    if not inline:
        from workers.tasks import replay_plugin

        host.registry.show(plugin_id)  # a clear error for an unknown plugin, before queueing
        replay_plugin.delay(
            plugin_id, since_dt.isoformat(), until_dt.isoformat() if until_dt else None, include_failed
        )
        say(f"replay of {plugin_id} since {since_dt:%Y-%m-%d %H:%M} queued on the lifecycle queue")
        return
    from services_ai_plugins.calling.runtime import PluginRuntime
    from services_ai_plugins.pipeline.events import EventService

    runtime = PluginRuntime(host.registry)
    with _progress(f"replaying {plugin_id}") as bar:
        task = bar.add_task("replay", total=None)
        counts = EventService(host).backfill(
            runtime,
            plugin_id,
            since_dt,
            until_dt,
            include_failed,
            progress=lambda n, total: bar.update(task, completed=n, total=total),
        )
    runtime.close()
    say(
        f"replayed {counts['events']} event(s) through {plugin_id}: "
        f"{counts['success']} success, {counts['failed']} failed"
    )


# -- widgets --------------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@JSON
@click.pass_context
def widgets(ctx: click.Context, as_json: bool) -> None:
    """Dashboard widget snapshots (what the dashboard shows)."""
    if ctx.invoked_subcommand is not None:
        return
    from services_ai_plugins.features.widgets import WidgetService

    snaps = WidgetService(host_from_env()).snapshots()
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
    """Render widgets now, without waiting for the schedule (all, or one plugin's)."""
    from services_ai_plugins.calling.runtime import PluginRuntime
    from services_ai_plugins.features.widgets import HOOK, WidgetService

    host = host_from_env()
    runtime = PluginRuntime(host.registry)
    runtime.refresh(force=True)
    service = WidgetService(host)
    if plugin_id is not None:
        host.registry.show(plugin_id)
        ids = [plugin_id]
    else:
        ids = [t.plugin.plugin_id for t in runtime.targets(HOOK)]
    out = []
    for pid in ids:
        snap = service.refresh(runtime, pid, actor=actor())
        if snap is None:
            runtime.close()
            raise InputError(
                f"plugin {pid}: has no widget to render (it must be enabled, implement dashboard_widget "
                "and hold the dashboard_widget permission)"
            )
        out.append(snap)
    runtime.close()
    if as_json:
        emit_json(out)
        return
    for snap in out:
        say(f"{snap['plugin_id']}: {snap['status']}" + (f" ({snap['error']})" if snap["error"] else ""))
    if not out:
        say("no plugin has a widget to render")


# -- exports --------------------------------------------------------------------------------


@click.group()
def export() -> None:
    """Data exports: plugins' rows for a type and date range, as CSV or JSON."""


def _filters(items: tuple[str, ...], raw: str | None) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if raw:
        loaded = _load_json(raw, "--filters")
        if not isinstance(loaded, dict):
            raise InputError("--filters: must be a JSON object")
        filters.update(loaded)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--filter: {item!r} is not KEY=VALUE")
        try:
            filters[key] = json.loads(value)
        except ValueError:
            filters[key] = value
    return filters


@export.command("run")
@click.argument("export_type")
@click.option("--since", default=None, help="First day (YYYY-MM-DD).")
@click.option("--until", default=None, help="Last day (YYYY-MM-DD).")
@click.option("--filter", "filter_items", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("--filters", "filters_json", default=None, help="Filters as a JSON object.")
@click.option("--queue", "queued", is_flag=True, help="Run on an exports worker instead of here.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the rows here."
)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
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
    from services_ai_plugins.calling.runtime import PluginRuntime
    from services_ai_plugins.features.exports import ExportService

    host = host_from_env()
    service = ExportService(host)
    export_id = service.create(export_type, since, until, _filters(filter_items, filters_json), actor())
    if queued:
        from workers.tasks import run_export

        run_export.delay(export_id)
        click.echo(export_id)
        return
    runtime = PluginRuntime(host.registry)
    with _progress(f"export {export_type}") as bar:
        task = bar.add_task("plugins", total=None)
        job = service.run(runtime, export_id, progress=lambda n, t: bar.update(task, completed=n, total=t))
    runtime.close()
    for plugin_id, entry in job["plugins"].items():
        if entry["status"] != "success":
            warn(f"{plugin_id}: {entry['status']}: {entry['error']}")
    if job["error"]:
        warn(job["error"])
    if output is not None:
        _download(service, export_id, output, fmt)
    click.echo(export_id)


def _download(service: Any, export_id: str, output: Path | None, fmt: str) -> None:
    job = service.get(export_id)
    if output is None:
        service.write(export_id, sys.stdout, fmt)
        return
    tmp = output.with_name(output.name + ".part")
    with _progress(f"writing {output.name}") as bar, tmp.open("w", encoding="utf-8", newline="") as fh:
        task = bar.add_task("rows", total=job["row_count"])
        n = service.write(export_id, fh, fmt, progress=lambda done, _t: bar.update(task, completed=done))
    tmp.replace(output)
    err.print(f"wrote {n} row(s) to {output}", markup=False, highlight=False)


@export.command("download")
@click.argument("export_id")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default stdout)."
)
def export_download(export_id: str, fmt: str, output: Path | None) -> None:
    """Write a finished export as CSV or JSON."""
    from services_ai_plugins.features.exports import ExportService

    _download(ExportService(host_from_env()), export_id, output, fmt)


@export.command("show")
@click.argument("export_id")
@JSON
def export_show(export_id: str, as_json: bool) -> None:
    """An export's state and each plugin's contribution."""
    from services_ai_plugins.features.exports import ExportService

    job = ExportService(host_from_env()).get(export_id)
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
    from services_ai_plugins.features.exports import ExportService

    jobs = ExportService(host_from_env()).recent()
    if as_json:
        emit_json(jobs)
        return
    table(
        None,
        ["id", "type", "status", "rows", "created"],
        [(j["id"], j["export_type"], j["status"], j["row_count"], j["created_at"][:19]) for j in jobs],
    )


# -- ops ------------------------------------------------------------------------------------


@click.command()
@JSON
def status(as_json: bool) -> None:
    """Events by state, queue depths, plugins and widgets."""
    from services_ai_plugins.features.status import collect

    info = collect(host_from_env())
    if as_json:
        emit_json(info)
        return
    ev = info["events"]
    table(
        "events",
        ["total", "pending", "done", "failed", "dead"],
        [(ev["total"], ev["pending"], ev["done"], ev["failed"], ev["dead"])],
    )
    table("queues", ["queue", "waiting"], [(q, "?" if n is None else n) for q, n in info["queues"].items()])
    if not info["broker"]["ok"]:
        warn(f"broker {info['broker']['url']} unreachable: {info['broker']['error']}")
    say(
        f"plugins: {info['plugins']['enabled']} enabled of {info['plugins']['installed']}; "
        f"widgets stale: {info['widgets']['stale']}; registry revision {info['registry_revision']}"
    )


_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.command(context_settings=_PASS_THROUGH)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Celery worker (same as: celery -A workers worker ARGS). Default: every queue."""
    from workers import app

    args = list(ctx.args)
    if not any(a in ("-Q", "--queues") or a.startswith("--queues=") for a in args):
        args += ["-Q", "events,widgets,exports,lifecycle"]
    app.worker_main(["worker", *args])


@click.command(context_settings=_PASS_THROUGH)
@click.pass_context
def beat(ctx: click.Context) -> None:
    """Run Celery beat, the widget refresh scheduler (same as: celery -A workers beat ARGS)."""
    from workers import app

    app.start(["beat", *ctx.args])


@click.command()
@click.option(
    "--events",
    "count",
    default=40,
    show_default=True,
    type=click.IntRange(3, 100_000),
    help="How many events to publish.",
)
def demo(count: int) -> None:
    """Run the whole pipeline once and report what each plugin did (no Redis or PostgreSQL needed)."""
    from services_ai_plugins.cli.demo import run

    run(count)


def register(cli: click.Group) -> None:
    for command in (publish, events, dlq, replay, widgets, export, status, worker, beat, demo):
        cli.add_command(command)
