"""The one redaction rule: values that must never be stored or logged (a plugin's secret
settings, an event's personal data) are replaced wherever they appear in an error, a traceback
or a log line.

A value of four characters or more is replaced wherever it occurs; a shorter one (a short
secret, a two-letter name) only where it stands as a word of its own, so that redacting ``"Al"``
does not mangle every ``Alert``. Longer values go first, so a value holding another is replaced
whole. The forms a value takes in ``repr`` and JSON text are replaced too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["MARK", "RedactingFilter", "Redactor", "personal_values"]

MARK = "[redacted]"
#: Event fields that hold personal data (``custom_fields`` too, every string inside it).
PERSONAL_FIELDS = ("name", "email", "phone", "notes")
_SHORT = 4


class Redactor:
    """Replaces a fixed set of values in text."""

    __slots__ = ("_pattern",)

    def __init__(self, values: Iterable[Any]) -> None:
        forms: set[str] = set()
        for value in values:
            if value is None or isinstance(value, bool):
                continue
            text = str(value)
            if not text.strip():
                continue
            forms.add(text)
            forms.add(repr(text)[1:-1])  # as it appears inside a repr
            forms.add(json.dumps(text)[1:-1])  # ... and inside JSON text
        parts = []
        for form in sorted(forms, key=len, reverse=True):
            escaped = re.escape(form)
            parts.append(escaped if len(form) >= _SHORT else rf"(?<![\w]){escaped}(?![\w])")
        self._pattern = re.compile("|".join(parts)) if parts else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MARK, text)


def personal_values(*records: dict[str, Any] | None) -> list[str]:
    """The personal data in an event's records: name, email, phone, notes, and every string
    inside ``custom_fields``."""
    out: list[str] = []

    def strings(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                strings(v)
        elif isinstance(value, list):
            for v in value:
                strings(v)

    for record in records:
        if record:
            for name in PERSONAL_FIELDS:
                if record.get(name):
                    out.append(str(record[name]))
            strings(record.get("custom_fields"))
    return out


class PersonalValues:
    """An event's personal data (:func:`personal_values`), worked out only when an error needs
    redacting: nearly every call succeeds, and the walk was a tenth of the worker's time."""

    __slots__ = ("_records", "_values")

    def __init__(self, *records: Mapping[str, Any] | None) -> None:
        self._records: tuple[Mapping[str, Any] | None, ...] = records
        self._values: tuple[str, ...] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._values is None:
            self._values = tuple(personal_values(*(dict(r) if r else None for r in self._records)))
            self._records = ()
        return iter(self._values)


class RedactingFilter(logging.Filter):
    """A logging filter that applies a :class:`Redactor` to the whole formatted message (and
    to the exception text, if any). Put on a *handler*, it covers child loggers too."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactor:
            record.msg, record.args = self.redactor(record.getMessage()), None
            if record.exc_info:
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_info, record.exc_text = None, self.redactor(text)
        return True
