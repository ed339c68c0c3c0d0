"""The hot path: a batch of event messages in, one result row per (event, plugin, hook) out.

For each hook present in the batch, the enabled plugins that declare it and pass ``can_call``
get all their calls of the batch at once, through the one hook-calling path (each call with its
own time limit, copy of the data and error capture; one message per plugin when it runs in a
sandbox). Everything a batch produces (event rows, result rows, dead letters) is written in one
transaction; the messages are acknowledged only after it commits. A redelivered batch finds the
results it already stored and calls no plugin twice. Per event the hot path reads nothing from
the registry: the runtime's snapshot is refreshed at most once per poll interval.

A plugin that raises ``TransientError`` is called again for that event later: the event is
stored as ``pending`` without that result and sent again with a backoff; on its last attempt
(``SERVICES_AI_EVENT_MAX_ATTEMPTS``) the failure is stored as an ``error``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError

from schemas.errors import ContractError
from schemas.events import BookingUpdated, parse_event
from schemas.jsonload import strict_json_loads
from services_ai_plugins.calling.breaker import Breakers, Trip
from services_ai_plugins.calling.caller import HookCaller, Outcome, Target
from services_ai_plugins.calling.executor import ERROR, RETRY, SKIPPED, SUCCESS, Call
from services_ai_plugins.calling.permissions import EVENT_HOOKS
from services_ai_plugins.calling.requests import event_call, event_redactions
from services_ai_plugins.config import Config
from services_ai_plugins.errors import TransientError, one_line
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import utcnow
from services_ai_plugins.lifecycle.runtime import PluginRuntime
from services_ai_plugins.pipeline.rows import dead_row, event_row, result_row
from services_ai_plugins.pipeline.store import ResultStore

__all__ = [
    "ACK",
    "REQUEUE",
    "RETRY",
    "BatchReport",
    "Disposition",
    "EventProcessor",
    "Incoming",
    "backoff",
    "is_transient",
]

log = logging.getLogger(__name__)

ACK = "ack"
REQUEUE = "requeue"


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


@dataclass
class _Event:
    """A valid event of the batch, and what its plugins came to."""

    index: int
    event: Any
    hook: str
    data: dict[str, Any]
    previous: dict[str, Any] | None
    meta: dict[str, Any]
    failures: int = 0
    retry: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)


class EventProcessor:
    """Turns batches of event messages into stored results."""

    def __init__(self, config: Config, db: Database, runtime: PluginRuntime, caller: HookCaller) -> None:
        self.config = config
        self.runtime = runtime
        self.caller = caller
        self.store = ResultStore(db)
        self.breakers = Breakers(config.breaker_threshold, config.breaker_cooldown)
        self._breakers_read_at: float | None = None

    def close(self) -> None:
        self.store.close()

    # -- circuit breakers, shared through the database ---------------------------------------

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

    def _gate(self, target: Target) -> Outcome | None:
        closed_until = self.breakers.blocked_until(target.plugin_id)
        if closed_until is None:
            return None
        return Outcome(
            SKIPPED,
            error=(
                f"not called: timed out or crashed on its last {self.breakers.threshold} calls; "
                f"tried again after {closed_until:%H:%M:%S} UTC"
            ),
        )

    def _observe(self, target: Target, outcome: Outcome) -> None:
        self.breakers.record(target.plugin_id, outcome.status)

    # -- the batch ------------------------------------------------------------------------

    def process(self, batch: Sequence[Incoming]) -> BatchReport:
        report = BatchReport()
        now = utcnow()
        dead: list[dict[str, Any]] = []
        valid: list[_Event] = []
        seen: set[str] = set()
        for index, item in enumerate(batch):
            try:
                event = self._parse(item.body)
            except ContractError as exc:
                dead.append(dead_row(item.body, item.attempt, str(exc), "validation", now))
                continue
            except Exception as exc:  # a body no check foresaw: dead-lettered, never a requeue loop
                log.exception("an event could not be read; dead-lettering it")
                reason = f"event: could not be read: {one_line(exc, 300)}"
                dead.append(dead_row(item.body, item.attempt, reason, "validation", now))
                continue
            if event.event_id in seen:
                report.duplicates += 1  # published twice in one batch: one is enough
                continue
            seen.add(event.event_id)
            valid.append(self._prepare(index, event, item))
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
                        e.event.event_id
                        for e in valid
                        if batch[e.index].redelivered or batch[e.index].attempt > 1
                    ]
                    stored = self.store.existing(conn, seen_before)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    return self._retry(batch, exc, report)
                for hook in sorted({e.hook for e in valid}):
                    report.calls += self._call_plugins(
                        hook, [e for e in valid if e.hook == hook], batch, stored
                    )
                event_rows = [
                    event_row(
                        e.event, batch[e.index].attempt, e.failures, now, "pending" if e.retry else "done"
                    )
                    for e in valid
                ]
                result_rows = [row for e in valid for row in e.rows]
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
                    self._write_one_by_one(conn, batch, valid, event_rows, dead)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return self._retry(batch, exc, report)
        report.events = len(valid)
        report.dead = len(dead)
        dispositions = [Disposition(ACK)] * len(batch)
        for e in valid:
            if e.retry:
                attempt = batch[e.index].attempt
                dispositions[e.index] = Disposition(RETRY, countdown=backoff(attempt), attempt=attempt + 1)
        report.dispositions = dispositions
        return report

    @staticmethod
    def _parse(body: Any) -> Any:
        if isinstance(body, str | bytes):
            body = strict_json_loads(body, "event")
        return parse_event(body)

    @staticmethod
    def _prepare(index: int, event: Any, item: Incoming) -> _Event:
        data = event.data.model_dump(mode="json")
        previous = data.pop("previous_state", None) if isinstance(event, BookingUpdated) else None
        meta = {
            "event_id": event.event_id,
            "type": event.type,
            "occurred_at": event.occurred_at.isoformat(),
            "source": event.source,
            "attempt": item.attempt,
        }
        return _Event(index, event, EVENT_HOOKS[event.type], data, previous, meta)

    def _call_plugins(
        self,
        hook: str,
        events: list[_Event],
        batch: Sequence[Incoming],
        stored: dict[tuple[str, str, str], str],
    ) -> int:
        """Call every target of ``hook`` for the events it has no stored result for."""
        targets = self.runtime.targets(hook)
        if not targets:
            return 0
        redactions = [event_redactions(e.data, e.previous) for e in events]
        work: list[tuple[Target, list[Call]]] = []
        owners: list[list[_Event]] = []
        for target in targets:
            calls: list[Call] = []
            mine: list[_Event] = []
            for e, redact in zip(events, redactions, strict=True):
                done = stored.get((e.event.event_id, target.plugin_id, hook))
                if done is not None:
                    e.failures += done != SUCCESS
                    continue
                calls.append(event_call(hook, target.plugin_id, e.data, e.previous, e.meta, redact))
                mine.append(e)
            if calls:
                work.append((target, calls))
                owners.append(mine)
        outcomes = self.caller.call_many(hook, work, gate=self._gate, observe=self._observe)
        for (target, _calls), got in zip(work, outcomes, strict=True):
            self._log_failures(target, hook, got)
        made = 0
        last_attempt = self.config.event_max_attempts
        for (target, _calls), mine, got in zip(work, owners, outcomes, strict=True):
            for e, answer in zip(mine, got, strict=True):
                attempt = batch[e.index].attempt
                outcome = answer
                if answer.status == RETRY:
                    if attempt < last_attempt:
                        e.retry = True  # not stored: this plugin is called again for it later
                        continue
                    outcome = replace(
                        answer,
                        status=ERROR,
                        error=f"still asking for a retry after {attempt} attempts: {answer.error}",
                    )
                e.failures += not outcome.ok
                e.rows.append(result_row(e.event.event_id, target, hook, outcome, attempt))
                made += 1
        return made

    @staticmethod
    def _log_failures(target: Target, hook: str, outcomes: list[Outcome]) -> None:
        """One line per plugin and batch for what failed (the first failure's frames with it):
        the worker's log says what a plugin did without repeating it for every event."""
        failed = [o for o in outcomes if o.status not in (SUCCESS, SKIPPED, RETRY)]
        if not failed:
            return
        first = failed[0]
        frames = "; ".join(f"{f} `{f.text}`" if f.text else str(f) for f in first.frames)
        log.warning(
            "plugin %s %s: %d of %d call(s) failed: %s: %s%s",
            target.plugin_id,
            hook,
            len(failed),
            len(outcomes),
            first.status,
            first.error,
            f" [traceback: {frames}]" if frames else "",
        )

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
        rows = [dead_row(item.body, item.attempt, reason, "retries", now) for item in items]
        with self.store.connection() as conn:
            self.store.write(conn, [], [], rows)

    def _write_one_by_one(
        self,
        conn: Connection,
        batch: Sequence[Incoming],
        valid: list[_Event],
        event_rows: list[dict[str, Any]],
        dead: list[dict[str, Any]],
    ) -> None:
        now = utcnow()
        if dead:
            self.store.write(conn, [], [], dead)
        for e, row in zip(valid, event_rows, strict=True):
            try:
                self.store.write(conn, [row], e.rows, [])
            except Exception as exc:
                if is_transient(exc):
                    raise
                item = batch[e.index]
                reason = f"could not be stored: {one_line(exc, 300)}"
                self.store.write(conn, [], [], [dead_row(item.body, item.attempt, reason, "store", now)])
