"""The pipe between the host and a sandbox: length-prefixed JSON frames, strict and capped.

Each frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON (an object). The
host never trusts a frame from a sandbox: it refuses one over its size cap before reading it,
parses it strictly (no NaN or Infinity, no duplicate keys), and checks every field it uses.
"""

from __future__ import annotations

import json
import struct
from typing import Any

__all__ = ["HEADER", "FrameError", "FrameReader", "TooLarge", "decode", "dumps", "encode"]

HEADER = struct.Struct(">I")
_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode


class FrameError(ValueError):
    """A frame that breaks the protocol (too large, not JSON, not an object)."""


class TooLarge(FrameError):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"a reply of {size} bytes; the limit is {limit}")


def _no_constant(name: str) -> Any:
    raise FrameError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FrameError(f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def dumps(value: Any) -> str:
    """A JSON value as the host stores it (compact; NaN and Infinity refused)."""
    return _encode(value)


def encode(message: dict[str, Any]) -> bytes:
    body = _encode(message).encode("utf-8")
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(
            body.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_no_duplicates
        )
    except FrameError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise FrameError(f"a frame is an object, not {type(value).__name__}")
    return value


class FrameReader:
    """Frames out of a byte stream, read in whatever chunks the pipe gives."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Append what was read; the complete frames so far (raises FrameError)."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            if size > self.max_bytes:
                raise TooLarge(size, self.max_bytes)
            end = HEADER.size + size
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[HEADER.size : end])
            del self._buffer[:end]
            frames.append(decode(body))
        return frames
