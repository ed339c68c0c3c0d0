"""The hot path: a batch of event messages in, one result row per (event, plugin, hook) out.

For each valid event, the enabled plugins that implement its hook and pass ``can_call`` are
called one at a time, each with its own time limit and error capture. Everything a batch
produces (event rows, result rows, dead letters) is written in one transaction; the messages
are acknowledged only after it commits. A redelivered batch finds the results it already
stored and calls no plugin twice. Per event the hot path reads nothing from the registry: the
runtime's snapshot is refreshed at most once per poll interval.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError

from schemas.errors import ContractError
from schemas.events import BookingUpdated, parse_event
from schemas.jsonload import strict_json_loads
from services_ai_plugins.calling.breaker import Breakers, Trip
from services_ai_plugins.calling.dispatch import SKIPPED, SUCCESS, Outcome, invoke
from services_ai_plugins.calling.records import fresh
from services_ai_plugins.calling.runtime import PluginRuntime, Target
from services_ai_plugins.errors import TransientError
from services_ai_plugins.host import Host
from services_ai_plugins.infra.models import utcnow
from services_ai_plugins.lifecycle.permissions import EVENT_HOOKS
from services_ai_plugins.pipeline.store import ResultStore

log = logging.getLogger(__name__)

ACK = "ack"
RETRY = "retry"
REQUEUE = "requeue"
PERSONAL_FIELDS = ("name", "email", "phone", "notes")
MAX_DEAD_PAYLOAD = 256 * 1024


@dataclass(frozen=True)
class Incoming:
    """One message as the worker received it."""

    body: Any
    attempt: int = 1
    redelivered: bool = False


@dataclass(frozen=True)
class Disposition:
    """What to do with a message once the batch is over."""

    action: str
    countdown: float = 0.0
    attempt: int = 1


@dataclass
class BatchReport:
    events: int = 0
    calls: int = 0
    dead: int = 0
    duplicates: int = 0
    dispositions: list[Disposition] = field(default_factory=list)


def personal_values(*records: dict[str, Any] | None) -> list[str]:
    """The personal data in an event's records, to keep out of stored error messages: name,
    email, phone and notes, and every string inside ``custom_fields``."""
    out: list[str] = []

    def strings(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                strings(v)
        elif isinstance(value, list):
            for v in value:
                strings(v)

    for record in records:
        if record:
            for field in PERSONAL_FIELDS:
                if record.get(field):
                    out.append(str(record[field]))
            strings(record.get("custom_fields"))
    # Longest first, so a value containing another is redacted whole.
    return sorted({v for v in out if len(v) >= 3}, key=len, reverse=True)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the database went away, not a bad row."""
    if isinstance(exc, TransientError | OperationalError | SAInterfaceError):
        return True
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):  # from COPY (raw)
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter: 0..min(cap, base * 2**attempt) seconds."""
    return random.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))  # noqa: S311


def _dump_body(body: Any) -> str:
    if isinstance(body, str):
        text = body
    elif isinstance(body, bytes):
        text = body.decode("utf-8", "replace")
    else:
        try:
            text = json.dumps(body, default=repr)
        except (TypeError, ValueError, RecursionError):
            text = repr(body)
    return text[:MAX_DEAD_PAYLOAD]


def call_event_hook(
    runtime: PluginRuntime,
    target: Target,
    hook: str,
    data: dict[str, Any],
    previous: dict[str, Any] | None,
    meta: dict[str, Any],
    redact: list[str],
) -> Outcome:
    """Call one plugin's event hook: its own copies of the data, its own context (with the
    idempotency key), its time limit and size cap, personal data kept out of its errors."""
    config = runtime.registry.config
    context = runtime.context(
        target, event=meta, idempotency_key=f"{meta['event_id']}:{target.plugin.plugin_id}:{hook}"
    )
    kwargs: dict[str, Any] = {"context": context}
    if hook == "lead_created":
        kwargs["lead"] = fresh(data)
    else:
        kwargs["booking"] = fresh(data)
        if previous is not None:
            kwargs["previous_state"] = fresh(previous)
    return invoke(
        target.call,
        kwargs,
        time_limit=config.plugin_time_limit,
        max_bytes=config.result_max_bytes,
        redact=redact,
    )


class EventProcessor:
    """Turns batches of event messages into stored results."""

    def __init__(self, host: Host, runtime: PluginRuntime) -> None:
        self.host = host
        self.config = host.config
        self.runtime = runtime
        self.store = ResultStore(host.db)
        self.breakers = Breakers(self.config.breaker_threshold, self.config.breaker_cooldown)
        self._breakers_read_at: float | None = None

    def close(self) -> None:
        self.store.close()

    def _sync_breakers(self, conn: Connection) -> None:
        """Take on breakers other processes opened (at most once per registry poll interval),
        and claim the probe of any whose cool-down has passed: one process in the deployment
        makes it, the others keep skipping until it has."""
        now = time.monotonic()
        if (
            self._breakers_read_at is None
            or now - self._breakers_read_at >= self.config.registry_poll_seconds
        ):
            self._breakers_read_at = now
            self.breakers.adopt(self.store.open_breakers(conn), complete=True)
        for trip in self.breakers.due_probes():
            hold_until = utcnow() + timedelta(seconds=max(trip.cooldown, self.config.plugin_time_limit * 2))
            try:
                held = self.store.claim_probe(conn, trip, hold_until)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.warning("could not claim a circuit breaker's probe: %s", exc)
                held = None  # probe from here: at worst one more call than needed
            if held is None:
                self.breakers.claimed(trip.plugin_id)
            else:
                self.breakers.adopt([held])

    def _share_breakers(self, conn: Connection, trips: list[Trip]) -> None:
        try:
            self.store.share_breakers(conn, trips)
        except Exception as exc:
            if is_transient(exc):
                raise
            # Sharing is an optimisation (every process still has its own breaker): never let it
            # cost a batch.
            log.warning("could not share circuit breakers: %s", exc)

    # -- the batch ------------------------------------------------------------------------

    def process(self, batch: Sequence[Incoming]) -> BatchReport:
        report = BatchReport()
        now = utcnow()
        dead: list[dict[str, Any]] = []
        valid: list[tuple[int, Any]] = []
        seen: set[str] = set()
        for index, item in enumerate(batch):
            try:
                event = self._parse(item.body)
            except ContractError as exc:
                dead.append(self._dead(item, str(exc), "validation", now))
                continue
            if event.event_id in seen:
                report.duplicates += 1  # published twice in one batch: one is enough
                continue
            seen.add(event.event_id)
            valid.append((index, event))
        try:
            with self.store.connection() as conn:
                self.runtime.refresh()
                self._sync_breakers(conn)
                try:
                    # A message delivered before (redelivered by the broker, or sent again by a
                    # retry) finds the results stored the first time: those plugins are not
                    # called again. Fresh messages, nearly all, need no lookup; an event
                    # published twice under one id is still stored once (the write below).
                    seen_before = [
                        e.event_id for i, e in valid if batch[i].redelivered or batch[i].attempt > 1
                    ]
                    stored = self.store.existing(conn, seen_before)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    return self._retry(batch, exc, report)
                event_rows: list[dict[str, Any]] = []
                result_rows: list[dict[str, Any]] = []
                for index, event in valid:
                    item = batch[index]
                    rows, failures = self._fan_out(event, item, stored)
                    result_rows.extend(rows)
                    report.calls += len(rows)
                    event_rows.append(self._event_row(event, item, failures, now))
                trips = self.breakers.take_changes()
                if trips:
                    self._share_breakers(conn, trips)
                try:
                    self.store.write(conn, event_rows, result_rows, dead, fresh=not seen_before)
                except Exception as exc:
                    if is_transient(exc):
                        return self._retry(batch, exc, report)
                    # One bad row must not sink the batch: store event by event, dead-letter
                    # what cannot be stored.
                    log.warning("batch write failed (%s); storing event by event", type(exc).__name__)
                    self._write_one_by_one(conn, batch, valid, event_rows, result_rows, dead, now)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return self._retry(batch, exc, report)
        report.events = len(event_rows)
        report.dead = len(dead)
        report.dispositions = [Disposition(ACK)] * len(batch)
        return report

    @staticmethod
    def _parse(body: Any) -> Any:
        if isinstance(body, str | bytes):
            body = strict_json_loads(body, "event")
        return parse_event(body)

    def _fan_out(
        self, event: Any, item: Incoming, stored: dict[tuple[str, str, str], str]
    ) -> tuple[list[dict[str, Any]], int]:
        hook = EVENT_HOOKS[event.type]
        targets = self.runtime.targets(hook)
        if not targets:
            return [], 0
        data = event.data.model_dump(mode="json")
        previous = data.pop("previous_state", None) if isinstance(event, BookingUpdated) else None
        redact = personal_values(data, previous)
        meta = {
            "event_id": event.event_id,
            "type": event.type,
            "occurred_at": event.occurred_at.isoformat(),
            "source": event.source,
            "attempt": item.attempt,
        }
        rows = []
        failures = 0
        for target in targets:
            plugin_id = target.plugin.plugin_id
            key = (event.event_id, plugin_id, hook)
            if key in stored:
                failures += stored[key] != SUCCESS
                continue
            outcome = self._call(target, hook, data, previous, meta, redact)
            failures += not outcome.ok
            rows.append(
                {
                    "event_id": event.event_id,
                    "plugin_id": plugin_id,
                    "plugin_version": target.plugin.version,
                    "hook": hook,
                    "status": outcome.status,
                    "result_json": outcome.result_json,
                    "error": outcome.error,
                    "duration_ms": outcome.duration_ms,
                    "attempts": item.attempt,
                    "created_at": utcnow(),
                }
            )
        return rows, failures

    def _call(
        self,
        target: Target,
        hook: str,
        data: dict[str, Any],
        previous: dict[str, Any] | None,
        meta: dict[str, Any],
        redact: list[str],
    ) -> Outcome:
        plugin_id = target.plugin.plugin_id
        closed_until = self.breakers.blocked_until(plugin_id)
        if closed_until is not None:
            return Outcome(
                SKIPPED,
                error=(
                    f"not called: timed out on its last {self.breakers.threshold} calls; "
                    f"tried again after {closed_until:%H:%M:%S} UTC "
                    f"(re-run with: services-ai replay --plugin {plugin_id} --since DATE)"
                ),
            )
        outcome = call_event_hook(self.runtime, target, hook, data, previous, meta, redact)
        self.breakers.record(plugin_id, outcome.status)
        return outcome

    @staticmethod
    def _event_row(event: Any, item: Incoming, failures: int, now: datetime) -> dict[str, Any]:
        return {
            "event_id": event.event_id,
            "type": event.type,
            "source": event.source,
            "occurred_at": event.occurred_at,
            "received_at": now,
            "completed_at": utcnow(),
            "payload": event.model_dump(mode="json"),
            "status": "done",
            "failures": failures,
            "attempts": item.attempt,
        }

    @staticmethod
    def _dead(item: Incoming, reason: str, stage: str, now: datetime) -> dict[str, Any]:
        body = item.body
        event_id = body.get("event_id") if isinstance(body, dict) else None
        kind = body.get("type") if isinstance(body, dict) else None
        return {
            "event_id": event_id if isinstance(event_id, str) else None,
            "event_type": kind if isinstance(kind, str) else None,
            "payload": _dump_body(body),
            "reason": reason[:2000],
            "stage": stage,
            "attempts": item.attempt,
            "created_at": now,
            "replayed_at": None,
        }

    def _retry(self, batch: Sequence[Incoming], exc: BaseException, report: BatchReport) -> BatchReport:
        """The database is unreachable: try each message again later, with backoff."""
        log.warning("transient failure, batch of %d will be retried: %s", len(batch), exc)
        report.dispositions = [
            Disposition(RETRY, countdown=backoff(item.attempt), attempt=item.attempt + 1) for item in batch
        ]
        return report

    def dead_letter_exhausted(self, items: Iterable[Incoming], reason: str) -> None:
        """Events out of retries go to the dead-letter store (raises if that fails too)."""
        now = utcnow()
        rows = [self._dead(item, reason, "retries", now) for item in items]
        with self.store.connection() as conn:
            self.store.write(conn, [], [], rows)

    def _write_one_by_one(
        self,
        conn: Connection,
        batch: Sequence[Incoming],
        valid: list[tuple[int, Any]],
        event_rows: list[dict[str, Any]],
        result_rows: list[dict[str, Any]],
        dead: list[dict[str, Any]],
        now: datetime,
    ) -> None:
        by_event: dict[str, list[dict[str, Any]]] = {}
        for row in result_rows:
            by_event.setdefault(row["event_id"], []).append(row)
        if dead:
            self.store.write(conn, [], [], dead)
        for (index, _event), row in zip(valid, event_rows, strict=True):
            try:
                self.store.write(conn, [row], by_event.get(row["event_id"], []), [])
            except Exception as exc:
                if is_transient(exc):
                    raise
                reason = f"could not be stored: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                self.store.write(conn, [], [], [self._dead(batch[index], reason, "store", now)])
