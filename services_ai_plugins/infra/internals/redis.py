"""kombu's Redis transport, with one client per channel, and a batch's acknowledgements in one
round trip."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual.base import QoS as VirtualQoS

__all__ = ["PRIVATE_NAMES", "Channel", "Transport", "acknowledge_all"]

log = logging.getLogger(__name__)

#: (object, attribute): every private name this module relies on.
PRIVATE_NAMES: list[tuple[Any, str]] = [
    (kombu_redis.Channel, "_create_client"),
    (kombu_redis.QoS, "_remove_from_indices"),
    (kombu_redis.QoS, "pipe_or_acquire"),
]


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, with one Redis client object per channel instead of one per call.

    kombu builds a new ``redis.Redis`` for every publish, delivery record and acknowledgement;
    with redis-py 5 and later each build copies a table of some 170 response callbacks.
    Profiled, that was a tenth of the worker's consumer process and of the publisher
    (docs/BENCHMARKS.md). A ``redis.Redis`` takes a connection from its pool for each command,
    so one per channel serves every call the same way; it is rebuilt whenever the channel's
    pool is (after a reconnect).
    """

    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def acknowledge_all(requests: Sequence[Any]) -> None:
    """Acknowledge Celery requests; on Redis, all in one pipeline when they share a channel.

    kombu's Redis transport acknowledges a message with its own MULTI/EXEC (remove it from the
    unacked hash and index): per message, a quarter of what the consumer process does. A batch
    is acknowledged as a whole, so its removals go in one pipeline; the transport's own
    bookkeeping then runs message by message, as in ``kombu.transport.redis.QoS.ack``. Any other
    transport, or anything unexpected, takes the ordinary path, one message at a time.
    """
    pending = [r for r in requests if not r.acknowledged]
    if not pending:
        return
    messages = [r.message for r in pending]
    channel = messages[0].channel
    qos = getattr(channel, "qos", None)
    if (
        len(pending) == 1
        or not isinstance(qos, kombu_redis.QoS)
        or any(m.channel is not channel or m.acknowledged for m in messages)
    ):
        for request in pending:
            request.acknowledge()
        return
    try:
        with qos.pipe_or_acquire() as pipe:
            for message in messages:
                qos._remove_from_indices(message.delivery_tag, pipe)
            pipe.execute()
    except Exception:
        log.warning("bulk acknowledgement failed; acknowledging one by one", exc_info=True)
        for request in pending:
            request.acknowledge()
        return
    for request, message in zip(pending, messages, strict=True):
        VirtualQoS.ack(qos, message.delivery_tag)  # frees the prefetch slot
        message._state = "ACK"
        request.acknowledged = True
