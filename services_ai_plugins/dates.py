"""Dates and times given by people and programs (``--since``, ``?since=``, export ranges): the
one parser, with one message for what it cannot read."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services_ai_plugins.errors import InputError

__all__ = ["parse_day", "parse_moment"]


def parse_day(value: str | date | None, what: str) -> date | None:
    """``YYYY-MM-DD`` (or a date), or ``None`` for nothing given."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InputError(what, f"{str(value)[:40]!r} is not a date (YYYY-MM-DD)") from None


def parse_moment(value: str | datetime | None, what: str) -> datetime | None:
    """``YYYY-MM-DD[THH:MM[:SS]][+HH:MM]``; a time without a zone is UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise InputError(
                what, f"{str(value)[:40]!r} is not a date or time (YYYY-MM-DD[THH:MM[+00:00]])"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
