"""``/api/v1/events`` and ``/api/v1/dead-letters``: publish over HTTP, read results, replay."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from services_ai_plugins.pipeline.events import DeadLetterView, EventDetail, EventView
from services_ai_plugins.web.auth import Admin, HostDep, Publisher, Reader

__all__ = ["router"]

router = APIRouter(tags=["events"])

EXAMPLE = {"type": "lead.created", "data": {"id": "L-1", "name": "Ada", "email": "ada@example.com"}}


class Published(BaseModel):
    event_id: str


class ReplayDead(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(default=None, max_length=1000)
    all: StrictBool = False

    @model_validator(mode="after")
    def _one_of(self) -> ReplayDead:
        if not self.ids and not self.all:
            raise ValueError("give ids, or all: true")
        if self.ids and self.all:
            raise ValueError("give ids or all: true, not both")
        return self


@router.post(
    "/events",
    response_model=Published,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Publish an event (scope publish)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": EXAMPLE}},
        }
    },
)
async def publish(request: Request, host: HostDep, _: Publisher) -> Published:
    """The body as ``publish()`` takes it: ``{"type", "data"}``, with ``event_id``,
    ``occurred_at`` and ``source`` filled in when absent. Validated as ``publish()`` does
    (422 naming each bad field); answered once the broker has the message. Sending the same
    ``event_id`` again is the same event: it is stored and handled once."""
    raw = await request.body()
    from starlette.concurrency import run_in_threadpool

    event_id = await run_in_threadpool(host.publisher.publish, raw)
    return Published(event_id=event_id)


@router.get("/events", response_model=list[EventView], summary="The latest events")
def list_events(
    host: HostDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    type: Annotated[Literal["lead.created", "booking.created", "booking.updated"] | None, Query()] = None,
    state: Annotated[Literal["done", "pending", "failed"] | None, Query(alias="status")] = None,
) -> list[EventView]:
    return host.events.recent(limit=limit, event_type=type, status=state)


@router.get("/events/{event_id}", response_model=EventDetail, summary="One event and its results")
def show_event(host: HostDep, _: Reader, event_id: str) -> EventDetail:
    """As ``events show --json``: the event's fields, its data, and one result per plugin
    called (``status`` ``success`` or a failure word, ``result``, ``error``, traceback frames)."""
    return host.events.show(event_id)


@router.get("/dead-letters", response_model=list[DeadLetterView], summary="Dead letters, newest first")
def dead_letters(
    host: HostDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    include_replayed: bool = False,
) -> list[DeadLetterView]:
    return host.events.dead_letters(limit=limit, include_replayed=include_replayed)


@router.post("/dead-letters/replay", summary="Publish dead letters again")
def replay_dead(host: HostDep, _: Admin, body: Annotated[ReplayDead, Body()]) -> list[dict[str, Any]]:
    outcomes = host.events.replay_dead(None if body.all else body.ids, host.publisher.publish)
    return [{"id": i, "event_id": e, "error": err} for i, e, err in outcomes]
