"""Acknowledging a batch's messages in one Redis round trip.

kombu's Redis transport acknowledges a message with its own MULTI/EXEC (remove it from the
unacked hash and index). Per message, that round trip is a quarter of what the consumer process
does (profiled: docs/BENCHMARKS.md). A batch is acknowledged as a whole, so its removals go in
one pipeline; the transport's own bookkeeping then runs message by message, as in
``kombu.transport.redis.QoS.ack``. Any other transport, or anything unexpected, takes the
ordinary path, one message at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual.base import QoS as VirtualQoS

log = logging.getLogger(__name__)


def acknowledge_all(requests: Sequence[Any]) -> None:
    """Acknowledge Celery requests; on Redis, all in one pipeline when they share a channel."""
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
                qos._remove_from_indices(message.delivery_tag, pipe)  # type: ignore[no-untyped-call]
            pipe.execute()
    except Exception:
        log.warning("bulk acknowledgement failed; acknowledging one by one", exc_info=True)
        for request in pending:
            request.acknowledge()
        return
    for request, message in zip(pending, messages, strict=True):
        VirtualQoS.ack(qos, message.delivery_tag)  # type: ignore[no-untyped-call]  # frees the prefetch slot
        message._state = "ACK"
        request.acknowledged = True
