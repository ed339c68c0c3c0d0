"""Events the platform publishes: ``lead.created``, ``booking.created``, ``booking.updated``.

Each is an envelope ``{event_id, type, occurred_at, source, data}``. The ``data`` fields are the
contract; anything a platform wants to send beyond them goes in ``custom_fields``. An unknown key
anywhere else is refused by name, and so is ``"5"`` where a number belongs.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.errors import ContractError, FieldError
from schemas.jsonload import strict_json_loads

EVENT_TYPES: tuple[str, ...] = ("lead.created", "booking.created", "booking.updated")
BOOKING_STATUSES = ("pending", "confirmed", "cancelled", "completed", "no_show")
MAX_EVENT_BYTES = 256 * 1024
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")

Id = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Short = Annotated[StrictStr, Field(max_length=500)]
Long = Annotated[StrictStr, Field(max_length=20_000)]
# Strict float still takes an int (5 -> 5.0) but never "5", true or NaN.
Money = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]

#: custom_fields may hold this many keys and list items in all, nested this deep at most.
MAX_CUSTOM_ITEMS = 1000
MAX_CUSTOM_DEPTH = 10


def _bounded(fields: dict[str, Any]) -> dict[str, Any]:
    """Refuse custom fields with too many keys and items in all, or nested too deep (the size
    cap alone lets 100,000 tiny keys through, which every plugin would then be sent)."""
    count = 0
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(fields, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_CUSTOM_DEPTH:
            raise ValueError(f"is nested more than {MAX_CUSTOM_DEPTH} levels deep")
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            count += 1
            if count > MAX_CUSTOM_ITEMS:
                raise ValueError(f"holds more than {MAX_CUSTOM_ITEMS} keys and list items in all")
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return fields


CustomFields = Annotated[dict[str, JsonValue], AfterValidator(_bounded)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lead(_Record):
    """A lead as the platform sends it. Personal data: name, email, phone, notes, custom_fields."""

    id: Id
    name: Short | None = None
    email: Annotated[StrictStr, Field(max_length=254)] | None = None
    phone: Annotated[StrictStr, Field(max_length=64)] | None = None
    company: Short | None = None
    source: Short | None = None
    status: Annotated[StrictStr, Field(max_length=64)] | None = None
    notes: Long | None = None
    created_at: AwareDatetime | None = None
    custom_fields: CustomFields = Field(default_factory=dict)


class Booking(_Record):
    """A booking. Personal data: notes, custom_fields."""

    id: Id
    lead_id: Id | None = None
    service: Short | None = None
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    status: Literal["pending", "confirmed", "cancelled", "completed", "no_show"] | None = None
    location: Short | None = None
    price: Money | None = None
    notes: Long | None = None
    created_at: AwareDatetime | None = None
    custom_fields: CustomFields = Field(default_factory=dict)

    @model_validator(mode="after")
    def _times(self) -> Booking:
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise ValueError("ends_at: is before starts_at")
        return self


class BookingChange(Booking):
    """``booking.updated`` data: the booking now, and ``previous_state``, the booking as it was."""

    previous_state: Booking

    @model_validator(mode="after")
    def _same_booking(self) -> BookingChange:
        if self.previous_state.id != self.id:
            raise ValueError(f"previous_state: is booking {self.previous_state.id!r}, not {self.id!r}")
        return self

    def current(self) -> Booking:
        """The booking without its previous state (what the ``booking`` hook argument holds)."""
        return Booking.model_validate(self.model_dump(exclude={"previous_state"}))


def _new_event_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: StrictStr = Field(default_factory=_new_event_id)
    occurred_at: AwareDatetime = Field(default_factory=_now)
    source: Annotated[StrictStr, Field(min_length=1, max_length=100)] = "unknown"
    metadata: dict[str, Annotated[StrictStr, Field(max_length=500)]] = Field(
        default_factory=dict,
        description="Free-form tracing data (request ids and the like); never personal data.",
    )

    @field_validator("event_id")
    @classmethod
    def _event_id(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError(f"{v[:40]!r} is not an event id (up to 128 letters, digits, '-', '_', '.', ':')")
        return v


class LeadCreated(_Envelope):
    type: Literal["lead.created"]
    data: Lead


class BookingCreated(_Envelope):
    type: Literal["booking.created"]
    data: Booking


class BookingUpdated(_Envelope):
    type: Literal["booking.updated"]
    data: BookingChange

    @model_validator(mode="before")
    @classmethod
    def _lift_previous_state(cls, raw: Any) -> Any:
        # Accept previous_state beside data too (it is part of the event, not of the booking
        # for some publishers); it always ends up inside data.
        if isinstance(raw, dict) and "previous_state" in raw:
            data = raw.get("data")
            if isinstance(data, dict) and "previous_state" in data:
                raise ValueError("previous_state: given both in the envelope and in data")
            raw = dict(raw)
            prev = raw.pop("previous_state")
            raw["data"] = {**data, "previous_state": prev} if isinstance(data, dict) else data
        return raw


Event = Annotated[LeadCreated | BookingCreated | BookingUpdated, Field(discriminator="type")]
EVENT_MODELS: dict[str, type[LeadCreated | BookingCreated | BookingUpdated]] = {
    "lead.created": LeadCreated,
    "booking.created": BookingCreated,
    "booking.updated": BookingUpdated,
}
_ADAPTER: TypeAdapter[LeadCreated | BookingCreated | BookingUpdated] = TypeAdapter(Event)


def canonical_type(name: object) -> str | None:
    """``lead.created`` for ``lead.created``, ``lead-created`` or ``lead_created``; ``None`` for
    anything that is not an event type."""
    if not isinstance(name, str) or len(name) > 40:
        return None
    dotted = name.strip().lower().replace("-", ".").replace("_", ".")
    return dotted if dotted in EVENT_MODELS else None


def parse_event(raw: object) -> LeadCreated | BookingCreated | BookingUpdated:
    """Validate an event envelope (a dict or JSON), raising :class:`ContractError` per field.

    The type may be written ``lead.created`` or ``lead-created``; it is stored dotted."""
    if not isinstance(raw, dict | str | bytes):  # a task sent with args=[42], or none at all
        name = type(raw).__name__
        shown = "nothing" if raw is None else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
        raise ContractError("event", [FieldError("", f"must be a JSON object, not {shown}")])
    data = raw if isinstance(raw, dict) else strict_json_loads(raw, "event", MAX_EVENT_BYTES)
    if not isinstance(data, dict):
        raise ContractError("event", [FieldError("", "must be a JSON object")])
    kind = canonical_type(data.get("type"))
    if kind is not None and kind != data.get("type"):
        data = {**data, "type": kind}
    kind = data.get("type")
    if kind not in EVENT_MODELS:
        shown = repr(kind) if isinstance(kind, str) else "missing"
        raise ContractError(
            "event",
            [FieldError("type", f"{shown[:60]} is not an event type ({', '.join(EVENT_TYPES)})")],
        )
    try:
        model = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ContractError.from_validation_error("event", exc) from None
    check_encoded(model)
    return model


def check_encoded(model: BaseModel) -> None:
    """The event's encoded form held to the size cap, whatever form it came in (a dict, a
    model); NUL characters and numbers JSON cannot carry (beyond 64 bits, NaN, infinities)
    refused by name, not later as a broker or a database error."""
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


def _has_non_finite(value: dict[str, Any]) -> bool:
    """Whether a float anywhere in ``value`` is NaN or an infinity (a loop, not a recursion of
    generators: it runs for every event with a null field, nearly all of them)."""
    stack: list[Any] = [value]
    while stack:
        container = stack.pop()
        for child in container.values() if isinstance(container, dict) else container:
            if isinstance(child, float):
                if not math.isfinite(child):
                    return True
            elif isinstance(child, dict | list | tuple):
                stack.append(child)
    return False
