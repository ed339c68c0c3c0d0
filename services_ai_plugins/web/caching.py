"""What a web process may reuse for a moment instead of asking the database on every request:
the check of an API token and the dashboard's widget-list tag (with the body built for it).

A dashboard polls often and many dashboards poll at once; each poll was two queries (the token,
then the tag), more than the rest of the request together. Kept for ``web_cache_seconds`` (one
second by default): a revoked token stops working, and a new widget snapshot shows, that much
later in the worst case (tokens are revoked with the CLI, in another process).

Written here rather than taken from a caching library: two values with a deadline each, safe to
share between the server's threads, is all it needs (cachetools' TTLCache, say, would still need
a lock of ours around it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Recent", "RecentMap", "WidgetList"]

K = TypeVar("K")
V = TypeVar("V")

#: Tokens remembered at most (a flood of distinct valid tokens cannot grow the process).
MAX_ENTRIES = 1024


class Recent(Generic[V]):
    """One value, read again once it is older than ``seconds`` (0: every time)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._value: tuple[float, V] | None = None

    def get(self, read: Callable[[], V]) -> V:
        held, now = self._value, time.monotonic()
        if held is not None and now < held[0]:
            return held[1]
        value = read()
        if self.seconds > 0:
            self._value = (now + self.seconds, value)
        return value


class RecentMap(Generic[K, V]):
    """Values by key, each read again once older than ``seconds``; ``None`` is never kept (a
    wrong token is asked about every time, and rate limits still see it)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._values: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, read: Callable[[], V | None]) -> V | None:
        now = time.monotonic()
        held = self._values.get(key)
        if held is not None and now < held[0]:
            return held[1]
        value = read()
        if value is not None and self.seconds > 0:
            with self._lock:
                if len(self._values) >= MAX_ENTRIES:
                    self._values.clear()
                self._values[key] = (now + self.seconds, value)
        return value


class WidgetList:
    """The widget list's tag (re-read at most every ``seconds``) and the JSON body last built,
    with the tag it was built under: while the tag stays, the body is sent again as it is."""

    def __init__(self, seconds: float) -> None:
        self.tag = Recent[str](seconds)
        self._body: tuple[str, bytes] | None = None

    def body(self, tag: str, build: Callable[[], bytes]) -> bytes:
        held = self._body
        if held is None or held[0] != tag:
            held = self._body = (tag, build())
        return held[1]
