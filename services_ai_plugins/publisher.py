"""Publish platform events with one call::

    from services_ai_plugins.publisher import publish

    event_id = publish({"type": "lead.created", "data": {"id": "L-1", "email": "a@b.co"}})

The envelope is validated first (``event_id``, ``occurred_at`` and ``source`` are filled in
when absent); the call returns the event id once the broker has accepted the message, retrying
connection errors with backoff and raising :class:`BrokerUnavailableError` when the broker stays
down. Importing this module loads no plugin code: only the contracts, kombu/Celery and the
configuration.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from kombu.serialization import dumps
from pydantic import BaseModel

from schemas.errors import ContractError
from schemas.events import BookingCreated, BookingUpdated, LeadCreated, check_encoded, parse_event
from services_ai_plugins.config import Config, get_config
from services_ai_plugins.errors import BrokerUnavailableError, EventError
from services_ai_plugins.infra.broker import EVENT_TASK, EVENTS_QUEUE, is_redis_url, safe_url, sender_app

__all__ = ["Envelope", "Publisher", "publish", "validate"]

Envelope = LeadCreated | BookingCreated | BookingUpdated


def validate(event: dict[str, Any] | str | bytes | BaseModel) -> Envelope:
    """The event as its contract model, or :class:`EventError` naming every bad field; in
    whatever form it arrives, its encoded form is held to the size cap, and NUL characters and
    numbers JSON cannot carry (beyond 64 bits, NaN, infinities) are refused here, not later as
    a broker error or a database error."""
    try:
        model = event if isinstance(event, LeadCreated | BookingCreated | BookingUpdated) else None
        if model is None:
            if isinstance(event, BaseModel):
                event = event.model_dump(mode="json")
            return parse_event(event)  # its encoded form checked there, as at the worker
        check_encoded(model)
        return model
    except ContractError as exc:
        raise EventError(exc) from None


class Publisher:
    """Sends events to the events queue. One per process is plenty (``publish`` keeps one);
    it may be shared by threads."""

    def __init__(self, config: Config | None = None, max_retries: int | None = None) -> None:
        self.config = config or get_config()
        self.max_retries = self.config.publish_retries if max_retries is None else max_retries
        self.app = sender_app(self.config)
        self.retry_policy = {
            "max_retries": self.max_retries,
            "interval_start": 0.1,
            "interval_step": 0.5,
            "interval_max": 3.0,
        }
        # On Redis, the message is Celery's own (``create_task_message``) put on the queue by
        # kombu's own channel, without ``send_task``'s routing, producer pool and declaration
        # of the queue on every call: 330 -> 175 us of CPU a publish, measured here; where the
        # publisher shares cores with workers that was the difference between reaching half the
        # pipeline's maximum rate and not (docs/BENCHMARKS.md). The queue needs no declaring
        # there: Celery publishes to the default exchange, which kombu's Redis transport maps
        # straight to the list named by the routing key. Other brokers take ``send_task``.
        self._direct = is_redis_url(self.config.broker_url)
        self._local = threading.local()  # a connection per thread (and per process: forks)

    def publish(self, event: dict[str, Any] | str | bytes | BaseModel) -> str:
        model = validate(event)
        body = model.model_dump(mode="json")
        # Celery would put a repr of the whole payload in the message headers, where
        # monitoring tools show it: personal data, and a third of the publish cost.
        argsrepr = f"<{model.type} {model.event_id}>"
        try:
            if self._direct:
                self._put(model.event_id, body, argsrepr)
            else:
                self.app.send_task(
                    EVENT_TASK,
                    args=[body],
                    queue=EVENTS_QUEUE,
                    task_id=model.event_id,
                    argsrepr=argsrepr,
                    kwargsrepr="{}",
                    retry=True,
                    retry_policy=self.retry_policy,
                )
        except Exception as exc:  # kombu/redis/amqp each raise their own connection errors
            raise BrokerUnavailableError(
                f"the broker at {safe_url(self.config.broker_url)} did not accept event "
                f"{model.event_id} after {self.max_retries + 1} tries: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            ) from exc
        return model.event_id

    def _put(self, event_id: str, body: dict[str, Any], argsrepr: str) -> None:
        headers, properties, payload, _ = self.app.amqp.create_task_message(
            event_id, EVENT_TASK, [body], {}, argsrepr=argsrepr, kwargsrepr="{}"
        )
        content_type, encoding, data = dumps(payload, serializer="json")  # type: ignore[no-untyped-call]
        properties = {**properties, "delivery_mode": 2}  # persistent, as send_task sets it
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # first use in this thread or process
            # This thread's own connection: its Redis client may keep one socket (no pool
            # checkout per publish; other brokers ignore the option).
            local.pid = os.getpid()
            local.conn = self.app.connection_for_write(transport_options={"single_connection": True})
            # kombu's retry around the send: reconnects and backs off on connection errors.
            local.send = local.conn.autoretry(_put_message, channel=None, **self.retry_policy)
        local.send(data, content_type, encoding, headers, properties)

    def close(self) -> None:
        """Close this thread's connection (the others close with their threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.release()
        self._local = threading.local()


def _put_message(
    data: Any,
    content_type: str,
    encoding: str,
    headers: dict[str, Any],
    properties: dict[str, Any],
    channel: Any,
) -> None:
    message = channel.prepare_message(data, 0, content_type, encoding, headers, properties)
    channel.basic_publish(message, exchange="", routing_key=EVENTS_QUEUE)


_default: Publisher | None = None


def publish(event: dict[str, Any] | str | bytes | BaseModel) -> str:
    """Validate and publish one event; returns its id once the broker has accepted it."""
    global _default
    if _default is None or _default.config is not get_config():
        _default = Publisher()
    return _default.publish(event)
