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

from typing import Any

from pydantic import BaseModel

from schemas.errors import ContractError
from schemas.events import BookingCreated, BookingUpdated, LeadCreated, check_encoded, parse_event
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
            return parse_event(event)  # its encoded form checked there, as at the worker
        check_encoded(model)
        return model
    except ContractError as exc:
        raise EventError(exc) from None


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
