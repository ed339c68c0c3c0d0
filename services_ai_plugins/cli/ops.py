"""``services-ai status``, ``worker``, ``beat``, ``db`` and ``secret-key``: running it."""

from __future__ import annotations

import os
import sys

import click
from cryptography.fernet import Fernet

from services_ai_plugins.cli.common import JSON, host_from_env
from services_ai_plugins.cli.output import emit_json, say, table, warn
from services_ai_plugins.infra.broker import QUEUES, refuse_in_process_broker

__all__ = ["COMMANDS"]


@click.command()
@JSON
def status(as_json: bool) -> None:
    """Events by state, queue depths, the broker, plugins, widgets and isolation."""
    info = host_from_env().status.collect()
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
    broker = info["broker"]
    say(f"broker: {broker['url']} ({broker['transport']})")
    if not broker["ok"]:
        warn(f"broker {broker['url']} unreachable: {broker['error']}")
    isolation = info["isolation"]
    say(f"isolation: {isolation['mode']}; active: {', '.join(isolation['active']) or 'none'}")
    if isolation["inactive"]:
        say(f"  not active: {', '.join(isolation['inactive'])}")
    plugins = info["plugins"]
    say(
        f"plugins: {plugins['enabled']} enabled of {plugins['installed']}; "
        f"widgets stale: {info['widgets']['stale']}; registry revision {info['registry_revision']}"
    )
    for plugin_id, reason in plugins["disabled"].items():
        warn(f"{plugin_id} was disabled by the host: {reason}")
    for plugin_id, kinds in plugins["problems"].items():
        for kind, problem in kinds.items():
            warn(f"{plugin_id}: {kind}: {problem['reason']} (last seen {problem['last_seen'][:19]})")
    for plugin_id, until in info["breakers_open"].items():
        warn(f"{plugin_id} is not being called until {until[:19]} (its breaker is open)")


_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _celery(command: str, args: list[str]) -> None:
    """Become ``celery -A workers COMMAND ARGS`` (this process imports nothing of ``workers``)."""
    args = ["--help" if a == "-h" else a for a in args]
    if "--help" not in args:
        refuse_in_process_broker(host_from_env(ready=False).config, command)
    sys.stdout.flush()
    argv = [sys.executable, "-m", "celery", "-A", "workers", command, *args]
    os.execv(sys.executable, argv)  # noqa: S606 - becoming celery, with our own interpreter


@click.command(context_settings=_PASS_THROUGH)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Celery worker (same as: celery -A workers worker ARGS; -h for its options).
    Default: every queue."""
    args = list(ctx.args)
    if not any(a in ("-Q", "--queues") or a.startswith("--queues=") for a in args):
        args += ["-Q", ",".join(QUEUES)]
    _celery("worker", args)


@click.command(context_settings=_PASS_THROUGH)
@click.pass_context
def beat(ctx: click.Context) -> None:
    """Run Celery beat, the widget refresh scheduler (same as: celery -A workers beat ARGS; -h
    for its options)."""
    _celery("beat", list(ctx.args))


@click.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
@JSON
def db_upgrade(as_json: bool) -> None:
    """Create or migrate the database to the latest schema (safe to run again)."""
    host = host_from_env(ready=False)
    before, after = host.db.upgrade()
    if as_json:
        emit_json({"database": repr(host.db), "from": before, "to": after})
    elif before == after:
        say(f"database already at migration {after}")
    else:
        say(f"database migrated from {before or 'empty'} to {after}")


@db.command("current")
def db_current() -> None:
    """Show the database's migration and the latest one."""
    host = host_from_env(ready=False)
    say(f"current: {host.db.current_revision() or 'empty'}; latest: {host.db.head_revision()}")


@click.command("secret-key")
def secret_key() -> None:
    """Print a new key for SERVICES_AI_SECRET_KEY (put it first to rotate; keep the old one after it)."""
    say(Fernet.generate_key().decode())


COMMANDS = (status, worker, beat, db, secret_key)
