"""Strict JSON parsing: what ``json.loads`` lets through but a person would not expect.

``json.loads`` keeps the last of duplicate keys, accepts ``NaN`` and ``Infinity`` and, given
bytes, silently skips nothing but chokes on a byte-order mark with a confusing message. Each of
these is refused here with a message that says which.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.errors import ContractError, FieldError

MAX_JSON_BYTES = 1024 * 1024


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use null or a finite number)")


def strict_json_loads(raw: str | bytes, what: str = "document", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse JSON refusing duplicate keys, NaN/Infinity, a BOM, bad UTF-8 and oversize input."""
    if isinstance(raw, bytes):
        if len(raw) > max_bytes:
            raise ContractError(what, [FieldError("", f"is {len(raw)} bytes; the limit is {max_bytes}")])
        if raw.startswith(b"\xef\xbb\xbf"):
            raise ContractError(
                what,
                [FieldError("", "starts with a byte-order mark; save it as UTF-8 without BOM")],
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(what, [FieldError("", f"is not valid UTF-8 (byte {exc.start})")]) from None
    else:
        text = raw
        if len(text) > max_bytes:
            raise ContractError(
                what, [FieldError("", f"is {len(text)} characters; the limit is {max_bytes}")]
            )
        if text.startswith("\ufeff"):
            raise ContractError(
                what,
                [FieldError("", "starts with a byte-order mark; save it as UTF-8 without BOM")],
            )
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _DuplicateKeyError as exc:
        raise ContractError(what, [FieldError(exc.key, "duplicate key")]) from None
    except json.JSONDecodeError as exc:
        raise ContractError(
            what,
            [FieldError("", f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")],
        ) from None
    except ValueError as exc:
        raise ContractError(what, [FieldError("", str(exc))]) from None
    except RecursionError:
        raise ContractError(what, [FieldError("", "is nested too deeply")]) from None
