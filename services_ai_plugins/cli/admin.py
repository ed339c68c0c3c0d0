"""``services-ai db ...`` and ``services-ai secret-key``."""

from __future__ import annotations

import click
from cryptography.fernet import Fernet

from services_ai_plugins.cli.common import host_from_env
from services_ai_plugins.cli.output import emit_json, say


@click.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
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
