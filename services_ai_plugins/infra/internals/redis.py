"""The project's Redis transport: kombu's, with the crash-safe batch fetch (``redis_fetch``), one
Redis client object per channel, and a batch's acknowledgements in one round trip.

kombu's own fetch takes a message (BRPOP) and records it as unacknowledged in a second round
trip, so a worker killed between the two loses it; :class:`Channel` takes up to a batch and
records it in one Lua script over kombu's own structures (``redis_fetch``: why, and how it
waits). ``transport_options={"atomic_fetch": False}`` (``SERVICES_AI_REDIS_ATOMIC_FETCH=false``)
is kombu's fetch. Publishing, acknowledgement, rejection and restores are kombu's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kombu.message import Message
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual.base import QoS as VirtualQoS

from services_ai_plugins.infra.internals.redis_fetch import AtomicFetchChannel, QoS

__all__ = ["PRIVATE_NAMES", "Channel", "QoS", "Transport", "ack_many", "acknowledge_all"]

log = logging.getLogger(__name__)

#: (object, attribute): every private name this module relies on (the fetch's own are in
#: ``redis_fetch.PRIVATE_NAMES``).
PRIVATE_NAMES: list[tuple[Any, str]] = [
    (kombu_redis.Channel, "_create_client"),
    (kombu_redis.QoS, "_remove_from_indices"),
    (kombu_redis.QoS, "pipe_or_acquire"),
    (VirtualQoS, "ack"),
    (Message, "_state"),
]


class Channel(AtomicFetchChannel):
    """The crash-safe fetch, with one Redis client object per channel instead of one per call.

    kombu builds a new ``redis.Redis`` for every publish, delivery record and acknowledgement;
    with redis-py 5 and later each build copies a table of some 170 response callbacks.
    Profiled, that was a tenth of the worker's consumer process and of the publisher
    (docs/BENCHMARKS.md). A ``redis.Redis`` takes a connection from its pool for each command,
    so one per channel serves every call the same way; it is rebuilt whenever the channel's
    pool is (after a reconnect).
    """

    _sync_client: Any = None
    #: The channel's client keeps one connection instead of taking one from its pool for each
    #: command (a checkout and a release, a sixth of a publish's CPU). Only for a channel one
    #: thread uses: the publisher sets it on its own connection per thread
    #: (``transport_options={"single_connection": True}``).
    single_connection = False

    from_transport_options = (*AtomicFetchChannel.from_transport_options, "single_connection")  # type: ignore[assignment]

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            if self.single_connection:
                # redis-py's own mode, made as kombu makes its client (the channel's pool, its
                # credentials); the connection reconnects by itself after an error.
                client = self.Client(
                    connection_pool=self.pool,
                    credential_provider=self.pool.connection_kwargs.get("credential_provider"),
                    single_connection_client=True,
                )
            else:
                client = super()._create_client()
            self._sync_client = client
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def ack_many(messages: Sequence[Any]) -> bool:
    """Acknowledge kombu messages of one Redis channel in one pipeline round trip.

    kombu acknowledges one message per MULTI/EXEC (remove it from the unacked hash and index).
    Returns False, having done nothing, unless every message is an unacknowledged message of
    the same Redis channel; raises what Redis raises (nothing is then marked acknowledged).
    The transport's own bookkeeping then runs message by message, as in
    ``kombu.transport.redis.QoS.ack``.
    """
    if not messages:
        return True
    channel = messages[0].channel
    qos = getattr(channel, "qos", None)
    if not isinstance(qos, kombu_redis.QoS) or any(
        m.channel is not channel or m.acknowledged for m in messages
    ):
        return False
    with qos.pipe_or_acquire() as pipe:
        for message in messages:
            qos._remove_from_indices(message.delivery_tag, pipe)
        pipe.execute()
    for message in messages:
        VirtualQoS.ack(qos, message.delivery_tag)  # frees the prefetch slot
        message._state = "ACK"
    return True


def acknowledge_all(requests: Sequence[Any]) -> None:
    """Acknowledge Celery requests; on Redis, all in one pipeline when they share a channel.

    kombu's Redis transport acknowledges a message with its own MULTI/EXEC: per message, a
    quarter of what the consumer process does. A batch is acknowledged as a whole, so its
    removals go in one pipeline (:func:`ack_many`). Any other transport, or anything
    unexpected, takes the ordinary path, one message at a time.
    """
    pending = [r for r in requests if not r.acknowledged]
    if not pending:
        return
    done = False
    if len(pending) > 1:
        try:
            done = ack_many([r.message for r in pending])
        except Exception:
            log.warning("bulk acknowledgement failed; acknowledging one by one", exc_info=True)
    if not done:
        for request in pending:
            request.acknowledge()
        return
    for request in pending:
        request.acknowledged = True
