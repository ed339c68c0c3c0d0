"""What the command modules share: the host, who is acting, JSON input, progress bars."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from schemas.errors import ContractError
from schemas.events import EVENT_MODELS, canonical_type
from schemas.jsonload import strict_json_loads
from services_ai_plugins.cli.output import err
from services_ai_plugins.errors import InputError
from services_ai_plugins.host import Host

__all__ = ["EVENT_TYPE", "JSON", "actor", "host_from_env", "load_json", "progress"]

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


class _EventType(click.ParamType):  # type: ignore[type-arg]
    """An event type, written ``lead.created`` or ``lead-created``."""

    name = "event type"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        kind = canonical_type(value)
        if kind is None:
            self.fail(f"{value!r} is not an event type ({', '.join(sorted(EVENT_MODELS))})", param, ctx)
        return kind

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "lead-created|booking-created|booking-updated"


EVENT_TYPE = _EventType()


def host_from_env(ready: bool = True) -> Host:
    """A host from the environment; ``ready`` checks (or, for the SQLite default, creates) the
    schema."""
    host = Host()
    return host.ready() if ready else host


def actor() -> str:
    """Who is acting, for the audit log: ``SERVICES_AI_ACTOR``, else the OS user."""
    explicit = os.environ.get("SERVICES_AI_ACTOR")
    if explicit:
        return explicit
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def load_json(value: str, what: str) -> Any:
    """A JSON argument: the text itself, ``@file``, or ``-`` for standard input."""
    if value == "-":
        raw: str | bytes = sys.stdin.read()
    elif value.startswith("@"):
        path = Path(value[1:])
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InputError(what, f"cannot read {path}: {exc.strerror}") from None
    else:
        raw = value
    try:
        return strict_json_loads(raw, what)
    except ContractError as exc:
        raise InputError("", str(exc)) from None


def progress(description: str) -> Progress:
    """A progress bar on standard error (shown only on a terminal)."""
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )
