"""Per-hook policy: how long a call may take, how much it may return, and what is checked,
capped and sanitised in what comes back before anyone stores or shows it.

One table for every hook; :class:`~services_ai_plugins.calling.caller.HookCaller` applies it to
every reply, whichever executor ran the call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services_ai_plugins.calling.sanitize import plain_text, sanitize_html
from services_ai_plugins.config import Config

__all__ = [
    "MAX_COLUMNS",
    "MAX_INTERVAL",
    "MAX_ROWS",
    "MIN_INTERVAL",
    "HookPolicy",
    "ShapeError",
    "policy_for",
]

MIN_INTERVAL = 5
MAX_INTERVAL = 86_400
MAX_ROWS = 100_000
MAX_COLUMNS = 200

#: ``(value, plugin name) -> value`` as stored; raises :class:`ShapeError` naming what is wrong.
Shape = Callable[[Any, str], Any]


class ShapeError(ValueError):
    """A reply of the wrong shape for its hook."""


@dataclass(frozen=True)
class HookPolicy:
    hook: str
    #: Seconds one call may take, on the wall clock.
    time_limit: float
    #: Largest reply, as encoded JSON.
    max_bytes: int
    #: Checks and sanitises the decoded reply; ``None``: any JSON value is kept as it is.
    shape: Shape | None = None


def _widget(default_interval: int) -> Shape:
    def shape(value: Any, name: str) -> dict[str, Any]:
        """HTML, or ``{"html", "title", "refresh_interval"}``: HTML sanitised, the title plain
        text, the interval clamped to 5 s .. 1 day."""
        if isinstance(value, str):
            return {
                "title": plain_text(name),
                "html": sanitize_html(value),
                "refresh_interval": default_interval,
            }
        if not isinstance(value, dict):
            raise ShapeError(
                f"returned {type(value).__name__}; expected HTML or {{html, title, refresh_interval}}"
            )
        unknown = sorted(set(value) - {"html", "title", "refresh_interval"})
        if unknown:
            raise ShapeError(f"returned unknown key(s) {', '.join(unknown)[:200]}")
        html = value.get("html")
        if not isinstance(html, str):
            raise ShapeError("html must be a string")
        title = value.get("title", name)
        if not isinstance(title, str):
            raise ShapeError("title must be a string")
        interval = value.get("refresh_interval", default_interval)
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise ShapeError("refresh_interval must be a number of seconds")
        return {
            "title": plain_text(title) or plain_text(name),
            "html": sanitize_html(html),
            "refresh_interval": int(min(max(interval, MIN_INTERVAL), MAX_INTERVAL)),
        }

    return shape


def _html(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ShapeError(f"returned {type(value).__name__}; expected HTML")
    return sanitize_html(value)


def _rows(value: Any, name: str) -> list[dict[str, Any]]:
    """A list of flat JSON objects, within the row and column caps."""
    if not isinstance(value, list):
        raise ShapeError(f"returned {type(value).__name__}; expected a list of rows (objects)")
    if len(value) > MAX_ROWS:
        raise ShapeError(f"returned {len(value)} rows; the limit is {MAX_ROWS}")
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise ShapeError(f"row {i} is {type(row).__name__}, not an object")
        if len(row) > MAX_COLUMNS:
            raise ShapeError(f"row {i} has {len(row)} columns; the limit is {MAX_COLUMNS}")
    return value


def policy_for(hook: str, config: Config) -> HookPolicy:
    """The policy of ``hook`` under ``config``."""
    limit = config.plugin_time_limit
    size = config.result_max_bytes
    if hook == "dashboard_widget":
        return HookPolicy(hook, limit, size * 4, _widget(config.widget_default_refresh))
    if hook == "settings_page":
        return HookPolicy(hook, limit, size * 4, _html)
    if hook == "data_export":
        # Exports go through every record of a date range: longer, and much larger.
        return HookPolicy(hook, limit * 12, 64 * 1024 * 1024, _rows)
    return HookPolicy(hook, limit, size)
