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

import math
from typing import Any

import orjson
from pydantic import BaseModel

from schemas.errors import ContractError, FieldError
from schemas.events import MAX_EVENT_BYTES, BookingCreated, BookingUpdated, LeadCreated, parse_event
from services_ai_plugins.config import Config, get_config
from services_ai_plugins.errors import BrokerUnavailableError, EventError
from services_ai_plugins.infra.broker import EVENT_TASK, EVENTS_QUEUE, safe_url, sender_app

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
            model = parse_event(event)
        _check_encoded(model)
        return model
    except ContractError as exc:
        raise EventError(exc) from None


def _check_encoded(model: Envelope) -> None:
    data = model.model_dump()
    try:
        encoded = orjson.dumps(data)
    except (TypeError, OverflowError, orjson.JSONEncodeError) as exc:
        reason = "holds a number JSON cannot carry (integers are limited to 64 bits)"
        raise ContractError("event", [FieldError("data", f"{reason}: {str(exc)[:80]}")]) from None
    if len(encoded) > MAX_EVENT_BYTES:
        raise ContractError(
            "event", [FieldError("", f"is {len(encoded)} bytes encoded; the limit is {MAX_EVENT_BYTES}")]
        )
    if b"\\u0000" in encoded:
        raise ContractError("event", [FieldError("data", "holds a NUL character (\\x00)")])
    if b"null" in encoded and _has_non_finite(data):  # orjson writes NaN as null
        raise ContractError(
            "event", [FieldError("data", "holds NaN or an infinity, which JSON cannot carry")]
        )


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


class Publisher:
    """Sends events to the events queue. One per process is plenty (``publish`` keeps one)."""

    def __init__(self, config: Config | None = None, max_retries: int | None = None) -> None:
        self.config = config or get_config()
        self.max_retries = self.config.publish_retries if max_retries is None else max_retries
        self.app = sender_app(self.config)

    def publish(self, event: dict[str, Any] | str | bytes | BaseModel) -> str:
        model = validate(event)
        body = model.model_dump(mode="json")
        try:
            self.app.send_task(
                EVENT_TASK,
                args=[body],
                queue=EVENTS_QUEUE,
                task_id=model.event_id,
                # Celery would put a repr of the whole payload in the message headers, where
                # monitoring tools show it: personal data, and a third of the publish cost.
                argsrepr=f"<{model.type} {model.event_id}>",
                kwargsrepr="{}",
                retry=True,
                retry_policy={
                    "max_retries": self.max_retries,
                    "interval_start": 0.1,
                    "interval_step": 0.5,
                    "interval_max": 3.0,
                },
            )
        except Exception as exc:  # kombu/redis/amqp each raise their own connection errors
            raise BrokerUnavailableError(
                f"the broker at {safe_url(self.config.broker_url)} did not accept event "
                f"{model.event_id} after {self.max_retries + 1} tries: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            ) from exc
        return model.event_id


_default: Publisher | None = None


def publish(event: dict[str, Any] | str | bytes | BaseModel) -> str:
    """Validate and publish one event; returns its id once the broker has accepted it."""
    global _default
    if _default is None or _default.config is not get_config():
        _default = Publisher()
    return _default.publish(event)
