"""How the host's views become JSON, for every caller: the CLI's ``--json`` and the web API
write the same documents because both use :func:`plain`."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from typing import Any

import orjson
from pydantic import BaseModel

__all__ = ["dumps", "plain"]


def plain(value: Any) -> Any:
    """The JSON form of what ``json`` cannot write by itself (the ``default`` hook)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Compact JSON as bytes: orjson (fast: the dashboard polls), or the standard library for
    what orjson refuses (integers beyond 64 bits in a stored payload)."""
    try:
        return orjson.dumps(value, default=plain, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:
        return json.dumps(value, default=plain, ensure_ascii=False, separators=(",", ":")).encode()
