"""How the CLI speaks: tables and progress for people, JSON for scripts, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.table import Table

from services_ai_plugins.encoding import plain
from services_ai_plugins.lifecycle.views import ChangeReport

__all__ = ["emit_json", "err", "fail", "out", "report", "say", "setting_text", "table", "warn", "yes_no"]


class _Console(Console):
    """A console that, writing to a file or a pipe, never folds a line (ids stay whole)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(400, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


out = _Console(soft_wrap=True)
err = _Console(stderr=True, soft_wrap=True)


def emit_json(value: Any) -> None:
    """Print JSON on stdout (exactly one document, nothing else)."""
    sys.stdout.write(json.dumps(value, default=plain, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out.print(t)


def say(message: str) -> None:
    """A line for people, on stdout."""
    out.print(message, markup=False, highlight=False)


def warn(message: str) -> None:
    err.print(f"warning: {message}", markup=False, highlight=False, style="yellow")


def fail(message: str) -> None:
    """The one line an error becomes, on stderr."""
    err.print(f"error: {message}", markup=False, highlight=False, style="red")


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def report(result: ChangeReport, as_json: bool, message: str) -> None:
    """A registry change: its warnings on standard error, then the plugin as JSON or ``message``."""
    for warning in result.warnings:
        warn(warning)
    if as_json:
        emit_json(result.plugin)
    else:
        say(message)


def setting_text(s: dict[str, Any]) -> str:
    """A setting's value for people: secrets only as set or not set."""
    if s["secret"]:
        return "(set)" if s["is_set"] else "(not set)"
    value = s["value"]
    text = "" if value is None else str(value)
    return text if s["is_set"] else f"{text} (default)" if text else "(not set)"
