"""``services-ai publish``, ``events``, ``dlq`` and ``replay``: events in, results out."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from services_ai_plugins.cli.common import EVENT_TYPE, JSON, host_from_env, load_json, progress
from services_ai_plugins.cli.output import emit_json, say, table, warn
from services_ai_plugins.dates import parse_moment
from services_ai_plugins.infra.broker import refuse_in_process_broker

__all__ = ["COMMANDS"]


@click.command()
@click.argument("kind", type=EVENT_TYPE)
@click.option("--data", "data", required=True, help="The event's data: JSON, @file, or - for stdin.")
@click.option("--source", default="cli", show_default=True, help="Who publishes (the envelope's source).")
@click.option("--event-id", default=None, help="Use this event id (default: a new UUID).")
def publish(kind: str, data: str, source: str, event_id: str | None) -> None:
    """Publish an event; prints its id alone on standard output."""
    host = host_from_env(ready=False)
    refuse_in_process_broker(host.config, "publish")
    envelope: dict[str, Any] = {"type": kind, "data": load_json(data, "--data"), "source": source}
    if event_id:
        envelope["event_id"] = event_id
    click.echo(host.publisher.publish(envelope))


@click.group()
def events() -> None:
    """Stored events and their results."""


@events.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--type", "event_type", type=EVENT_TYPE)
@click.option("--status", type=click.Choice(["done", "pending", "failed"]))
@JSON
def events_list(limit: int, event_type: str | None, status: str | None, as_json: bool) -> None:
    """The latest events."""
    rows = host_from_env().events.recent(limit=limit, event_type=event_type, status=status)
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
    """One event and the result of each plugin called for it (with a failure's frames)."""
    view = host_from_env().events.show(event_id)
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
    for r in view["results"]:
        if r["traceback"]:
            say(f"{r['plugin_id']} {r['hook']}: traceback (most recent call last), in the plugin's files:")
            for frame in r["traceback"]:
                say(f"  {frame['file']}:{frame['line']} in {frame['function']}")
                if frame["text"]:
                    say(f"    {frame['text']}")
        if r["status"] == "skipped":
            say(
                f"{r['plugin_id']}: re-run what it missed with: services-ai replay --plugin {r['plugin_id']} --since DATE"
            )


@click.group()
def dlq() -> None:
    """The dead-letter store: events that could not be processed."""


@dlq.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="Include replayed ones.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@JSON
def dlq_list(include_replayed: bool, limit: int, as_json: bool) -> None:
    """Dead letters, newest first."""
    rows = host_from_env().events.dead_letters(limit=limit, include_replayed=include_replayed)
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
    if not ids and not replay_all:
        raise click.UsageError("give dead-letter ids, or --all")
    host = host_from_env()
    refuse_in_process_broker(host.config, "dlq replay")
    failed = 0
    for letter_id, event_id, error in host.events.replay_dead(
        None if replay_all else ids, host.publisher.publish
    ):
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
    since_dt = parse_moment(since, "--since")
    until_dt = parse_moment(until, "--until")
    assert since_dt is not None
    host = host_from_env()
    host.registry.show(plugin_id)  # a clear error for an unknown plugin, before anything runs
    if not inline:
        refuse_in_process_broker(host.config, "replay")
        host.tasks.replay(plugin_id, since_dt, until_dt, include_failed)
        say(f"replay of {plugin_id} since {since_dt:%Y-%m-%d %H:%M} queued on the lifecycle queue")
        return
    with progress(f"replaying {plugin_id}") as bar:
        task = bar.add_task("replay", total=None)
        counts = host.backfill.run(
            plugin_id,
            since_dt,
            until_dt,
            include_failed,
            progress=lambda n, total: bar.update(task, completed=n, total=total),
        )
    host.close()
    say(
        f"replayed {counts['events']} event(s) through {plugin_id}: {counts['success']} success, {counts['failed']} failed"
    )


COMMANDS = (publish, events, dlq, replay)
