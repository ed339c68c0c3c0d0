"""``services-ai user ...`` and ``services-ai token ...``: who may use the web app and the API."""

from __future__ import annotations

import getpass
import sys

import click

from services_ai_plugins.cli.common import JSON, actor, host_from_env
from services_ai_plugins.cli.output import emit_json, say, table
from services_ai_plugins.errors import InputError
from services_ai_plugins.features.accounts import ROLES, SCOPES

__all__ = ["COMMANDS"]


def _read_password() -> str:
    """The password from standard input: asked twice without echo on a terminal, else the
    first line (so scripts can pipe it; never an argument, which other users could see)."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise InputError("password", "the two entries differ")
        return first
    line = sys.stdin.readline()
    if not line:
        raise InputError("password", "none on standard input (pipe it in, or run on a terminal)")
    return line.rstrip("\r\n")


@click.group()
def user() -> None:
    """People who log in to the web pages (role admin or viewer)."""


@user.command("create")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(ROLES), required=True, help="admin: every page and action; viewer: read only."
)
def user_create(name: str, role: str) -> None:
    """Create a user; the password is read from standard input."""
    made = host_from_env().accounts.create_user(name, _read_password(), role, actor=actor())
    say(f"created {made.role} {made.name}")


@user.command("password")
@click.argument("name")
def user_password(name: str) -> None:
    """Set a new password (read from standard input); the user's sessions end."""
    host_from_env().accounts.set_password(name, _read_password(), actor=actor())
    say(f"password of {name} changed; its sessions ended")


@user.command("delete")
@click.argument("name")
def user_delete(name: str) -> None:
    """Delete a user (its sessions end)."""
    host_from_env().accounts.delete_user(name, actor=actor())
    say(f"deleted {name}")


@user.command("list")
@JSON
def user_list(as_json: bool) -> None:
    """Users and their roles."""
    users = host_from_env().accounts.users()
    if as_json:
        emit_json(
            [
                {"name": u.name, "role": u.role, "created_at": u.created_at, "last_login_at": u.last_login_at}
                for u in users
            ]
        )
        return
    table(
        None,
        ["name", "role", "created", "last login"],
        [
            (
                u.name,
                u.role,
                f"{u.created_at:%Y-%m-%d %H:%M}",
                f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "-",
            )
            for u in users
        ],
    )


@click.group()
def token() -> None:
    """Bearer tokens for programs (scope admin, dashboard or publish)."""


@token.command("create")
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    required=True,
    help="admin: the whole API; dashboard: widgets; publish: POST events.",
)
@click.option("--name", default="", help="What it is for (shown in token list).")
def token_create(scope: str, name: str) -> None:
    """Create a token; prints it alone on standard output (it is not shown again)."""
    _view, secret = host_from_env().accounts.create_token(scope, name, actor=actor())
    click.echo(secret)


@token.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@JSON
def token_list(include_revoked: bool, as_json: bool) -> None:
    """Tokens (never their secret: the first characters tell them apart)."""
    tokens = host_from_env().accounts.tokens(include_revoked)
    if as_json:
        emit_json([t.__dict__ for t in tokens])
        return
    table(
        None,
        ["id", "scope", "name", "starts", "created", "last used", "revoked"],
        [
            (t.id, t.scope, t.name, t.prefix + "…", f"{t.created_at:%Y-%m-%d %H:%M}",
             f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-",
             f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "")
            for t in tokens
        ],
    )  # fmt: skip


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke a token: the next request with it is refused."""
    host_from_env().accounts.revoke_token(token_id, actor=actor())
    say(f"revoked token {token_id}")


COMMANDS = (user, token)
