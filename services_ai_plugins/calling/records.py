"""What a plugin receives as ``lead``, ``booking`` and ``previous_state``.

A plain dict (``lead["email"]``, ``lead.get("email")``) that also reads as attributes
(``lead.email``), as code written against the plan seed's model objects expects. Each plugin gets
its own copy, so a plugin that mutates its input changes nothing for the others.
"""

from __future__ import annotations

from typing import Any


class Record(dict[str, Any]):
    """A dict whose keys also read as attributes; missing attributes are ``None``-free errors."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def fresh(value: Any) -> Any:
    """A deep copy of JSON data (dicts become Records), fast for the small payloads of events:
    strings, numbers and None are immutable and shared; only containers are copied."""
    kind = type(value)
    if kind is dict or kind is Record:
        return Record({k: (v if type(v) not in _CONTAINERS else fresh(v)) for k, v in value.items()})
    if kind is list:
        return [v if type(v) not in _CONTAINERS else fresh(v) for v in value]
    if isinstance(value, dict):
        return Record({k: fresh(v) for k, v in value.items()})
    return value


_CONTAINERS = (dict, list, Record)
