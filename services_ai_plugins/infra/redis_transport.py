"""kombu's Redis transport, with one Redis client object per channel instead of one per call.

kombu builds a new ``redis.Redis`` for every publish, delivery record and acknowledgement; with
redis-py 5 and later each build copies a table of some 170 response callbacks. Profiled, that
was a tenth of the worker's consumer process and of the publisher (docs/BENCHMARKS.md). A
``redis.Redis`` takes a connection from its pool for each command, so one per channel serves
every call the same way; it is rebuilt whenever the channel's pool is (after a reconnect).
Everything else is kombu's own transport.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()  # type: ignore[no-untyped-call]
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
