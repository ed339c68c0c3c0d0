"""The pipe between the host and a sandbox: length-prefixed JSON frames, strict and capped.

Each frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON (an object). The
host never trusts a frame from a sandbox: it refuses one over its size cap before reading it,
parses it strictly (valid UTF-8, no NaN or Infinity, at most 1,024 levels deep), and checks
every field it uses. Frames are read and written with orjson, in C: with five plugins the
standard library's parser was a tenth of the worker's time. A key given twice in one object
counts once, the last one; one parser reads every frame, so no two readers can disagree on it.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import orjson

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


def dumps(value: Any) -> str:
    """A decoded frame's JSON value as the host stores it (compact). Only for what ``decode``
    gave: JSON's own types, finite numbers."""
    return orjson.dumps(value).decode("utf-8")


def _body(message: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(message)
    except (TypeError, orjson.JSONEncodeError):  # an integer past 64 bits, a key not a string
        return _encode(message).encode("utf-8")


def encode(message: dict[str, Any]) -> bytes:
    body = _body(message)
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"not JSON: {str(exc)[:80]}") from None
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
