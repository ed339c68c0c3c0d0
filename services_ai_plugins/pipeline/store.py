"""Writing a batch's rows: events, results and dead letters, in one transaction.

On PostgreSQL a batch of messages never seen before (nearly every batch) is written with COPY,
which costs the server a third of what an INSERT per row or even one INSERT ... SELECT per
table costs, and the client little more than encoding the values. A batch with a redelivered
message, or a COPY that meets a row already stored (an event published twice), is written with
one ``INSERT ... ON CONFLICT`` per table instead, the rows travelling as one JSON array
expanded server-side by ``jsonb_to_recordset``. Results arrive already encoded by
:class:`~services_ai_plugins.calling.caller.HookCaller` and are stored as they are, never decoded
and encoded again. Elsewhere (SQLite) it is a plain cached executemany.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from psycopg.errors import UniqueViolation
from sqlalchemy import Connection, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from services_ai_plugins.calling.breaker import Trip

__all__ = ["EVENT_COLUMNS", "RESULT_COLUMNS", "ResultStore", "results_json"]
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import DeadLetter, EventRecord, HookResult, PluginBreaker, utcnow

EVENT_COLUMNS = (
    "event_id", "type", "source", "occurred_at", "received_at", "completed_at",
    "payload", "status", "failures", "attempts",
)  # fmt: skip
RESULT_COLUMNS = (
    "event_id", "plugin_id", "plugin_version", "hook", "status", "error", "traceback",
    "duration_ms", "attempts", "created_at",
)  # fmt: skip

_PG_EVENTS = text(
    """
    INSERT INTO events (event_id, type, source, occurred_at, received_at, completed_at,
                        payload, status, failures, attempts)
    SELECT event_id, type, source, occurred_at, received_at, completed_at,
           payload, status, failures, attempts
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
        event_id varchar, type varchar, source varchar, occurred_at timestamptz,
        received_at timestamptz, completed_at timestamptz, payload jsonb, status varchar,
        failures int, attempts int)
    ON CONFLICT (event_id) DO UPDATE SET
        status = excluded.status, failures = excluded.failures,
        completed_at = excluded.completed_at, attempts = events.attempts + 1
    """
)
_PG_RESULTS = text(
    """
    INSERT INTO hook_results (event_id, plugin_id, plugin_version, hook, status, result, error,
                              traceback, duration_ms, attempts, created_at)
    SELECT event_id, plugin_id, plugin_version, hook, status, result, error,
           traceback, duration_ms, attempts, created_at
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
        event_id varchar, plugin_id varchar, plugin_version varchar, hook varchar,
        status varchar, result jsonb, error text, traceback jsonb, duration_ms float, attempts int,
        created_at timestamptz)
    ON CONFLICT (event_id, plugin_id, hook) DO NOTHING
    """
)
# Backfill re-runs a failed call: its row is replaced, never doubled.
_PG_RESULTS_REPLACE = text(
    str(_PG_RESULTS.text).replace(
        "DO NOTHING",
        "DO UPDATE SET plugin_version = excluded.plugin_version, status = excluded.status, "
        "result = excluded.result, error = excluded.error, traceback = excluded.traceback, "
        "duration_ms = excluded.duration_ms, attempts = hook_results.attempts + 1, "
        "created_at = excluded.created_at",
    )
)
_RECOUNT = text(
    "UPDATE events SET failures = (SELECT count(*) FROM hook_results h "
    "WHERE h.event_id = events.event_id AND h.status <> 'success') WHERE events.event_id IN :ids"
).bindparams(bindparam("ids", expanding=True))
_PG_EXISTING = text("SELECT event_id, plugin_id, hook, status FROM hook_results WHERE event_id = ANY(:ids)")


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


_dumps = json.JSONEncoder(separators=(",", ":"), default=_iso).encode


def results_json(rows: Sequence[dict[str, Any]]) -> str:
    """The result rows as one JSON array, each already-encoded result spliced in verbatim."""
    parts = []
    for row in rows:
        head = _dumps({c: row[c] for c in RESULT_COLUMNS})
        encoded = row["result_json"]
        parts.append(f'{head[:-1]},"result":{"null" if encoded is None else encoded}}}')
    return "[" + ",".join(parts) + "]"


class ResultStore:
    """One connection per batch: read what is already stored, then write everything at once."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.postgres = db.dialect == "postgresql"
        ev = sqlite.insert(EventRecord)
        self._sqlite_events = ev.on_conflict_do_update(
            index_elements=[EventRecord.event_id],
            set_={
                "status": ev.excluded.status,
                "failures": ev.excluded.failures,
                "completed_at": ev.excluded.completed_at,
                "attempts": EventRecord.attempts + 1,
            },
        )
        res = sqlite.insert(HookResult)
        keys = [HookResult.event_id, HookResult.plugin_id, HookResult.hook]
        self._sqlite_results = res.on_conflict_do_nothing(index_elements=keys)
        self._sqlite_results_replace = res.on_conflict_do_update(
            index_elements=keys,
            set_={
                "plugin_version": res.excluded.plugin_version,
                "status": res.excluded.status,
                "result": res.excluded.result,
                "error": res.excluded.error,
                "traceback": res.excluded.traceback,
                "duration_ms": res.excluded.duration_ms,
                "attempts": HookResult.attempts + 1,
                "created_at": res.excluded.created_at,
            },
        )

    _conn: Connection | None = None

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """This process's connection, kept from batch to batch (no pool checkout or ping per
        batch). Any error discards it, so a broken connection is replaced on the next batch."""
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = self.db.engine.connect()
        try:
            yield conn
        except BaseException:
            self._conn = None
            with contextlib.suppress(Exception):  # already broken; the next batch reconnects
                conn.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def existing(self, conn: Connection, event_ids: Sequence[str]) -> dict[tuple[str, str, str], str]:
        """Results already stored for these events (a redelivery or a repeat), with their status.

        Its transaction ends at once: a read inside an open transaction keeps a share lock on
        the table while the plugins run, which would make a migration (or TRUNCATE) wait.
        """
        if not event_ids:
            return {}
        if self.postgres:
            rows = conn.execute(_PG_EXISTING, {"ids": list(event_ids)}).all()
        else:
            rows = conn.execute(
                select(HookResult.event_id, HookResult.plugin_id, HookResult.hook, HookResult.status).where(
                    HookResult.event_id.in_(event_ids)
                )
            ).all()
        conn.commit()
        return {(r[0], r[1], r[2]): r[3] for r in rows}

    def open_breakers(self, conn: Connection) -> list[Trip]:
        """Breakers open anywhere in the deployment (a few rows at most)."""
        now = utcnow()
        rows = conn.execute(
            select(PluginBreaker.plugin_id, PluginBreaker.open_until, PluginBreaker.cooldown).where(
                PluginBreaker.open_until > now
            )
        ).all()
        conn.commit()
        return [Trip(r[0], r[1], float(r[2])) for r in rows]  # UTCDateTime: aware on every backend

    def claim_probe(self, conn: Connection, trip: Trip, hold_until: datetime) -> Trip | None:
        """Claim the probe of an expired breaker for this process, holding the others off until
        ``hold_until``: ``None`` if claimed (or no longer shared: probe anyway), else the breaker
        as another process holds it."""
        now = utcnow()
        try:
            claimed = conn.execute(
                update(PluginBreaker)
                .where(PluginBreaker.plugin_id == trip.plugin_id, PluginBreaker.open_until <= now)
                .values(open_until=hold_until, updated_at=now)
            ).rowcount
            row = None
            if not claimed:
                row = conn.execute(
                    select(PluginBreaker.open_until, PluginBreaker.cooldown).where(
                        PluginBreaker.plugin_id == trip.plugin_id
                    )
                ).first()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        if row is None:
            return None
        return Trip(trip.plugin_id, row[0], float(row[1]))

    def share_breakers(self, conn: Connection, trips: list[Trip]) -> None:
        """Record breakers this process opened (or closed) for the others."""
        insert_fn = postgresql.insert if self.postgres else sqlite.insert
        now = utcnow()
        try:
            for trip in trips:
                if trip.open_until is None:
                    conn.execute(delete(PluginBreaker).where(PluginBreaker.plugin_id == trip.plugin_id))
                    continue
                values = {"open_until": trip.open_until, "cooldown": trip.cooldown, "updated_at": now}
                ins = insert_fn(PluginBreaker).values(plugin_id=trip.plugin_id, **values)
                conn.execute(ins.on_conflict_do_update(index_elements=[PluginBreaker.plugin_id], set_=values))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def write(
        self,
        conn: Connection,
        events: list[dict[str, Any]],
        results: list[dict[str, Any]],
        dead: list[dict[str, Any]],
        fresh: bool = False,
        replace: bool = False,
    ) -> None:
        """Everything of a batch in one transaction (committed here, or rolled back).

        ``fresh``: no message of the batch was seen before, so COPY can be tried first.
        ``replace``: results replace the rows stored for the same (event, plugin, hook), and
        their events' failure counts are counted again (backfill).
        """
        now = utcnow()
        for row in events:
            row["completed_at"] = now  # as close to the commit as the client can tell
        if fresh and not replace and self.postgres and (events or results):
            try:
                self._copy(conn, events, results, dead)
                return
            except UniqueViolation:
                conn.rollback()  # stored before (published twice): upsert below instead
        try:
            if self.postgres:
                if events:
                    conn.execute(
                        _PG_EVENTS, {"rows": _dumps([{c: r[c] for c in EVENT_COLUMNS} for r in events])}
                    )
                if results:
                    conn.execute(
                        _PG_RESULTS_REPLACE if replace else _PG_RESULTS, {"rows": results_json(results)}
                    )
            else:
                if events:
                    conn.execute(self._sqlite_events, events)
                if results:
                    upsert = self._sqlite_results_replace if replace else self._sqlite_results
                    conn.execute(upsert, [_decoded(r) for r in results])
            if replace and results:
                conn.execute(_RECOUNT, {"ids": sorted({r["event_id"] for r in results})})
            if dead:
                conn.execute(insert(DeadLetter), dead)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _copy(
        self,
        conn: Connection,
        events: list[dict[str, Any]],
        results: list[dict[str, Any]],
        dead: list[dict[str, Any]],
    ) -> None:
        trans = conn.begin()
        try:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            if events:
                with cursor.copy(_COPY_EVENTS) as copy:
                    for row in events:
                        copy.write_row(
                            [_dumps(row["payload"]) if c == "payload" else row[c] for c in EVENT_COLUMNS]
                        )
            if results:
                with cursor.copy(_COPY_RESULTS) as copy:
                    for row in results:
                        values = [row[c] for c in RESULT_COLUMNS]
                        if row["traceback"] is not None:
                            values[_TRACEBACK] = _dumps(row["traceback"])
                        copy.write_row([*values, row["result_json"]])
            if dead:
                conn.execute(insert(DeadLetter), dead)
            trans.commit()
        except BaseException:
            trans.rollback()
            raise


_COPY_EVENTS = f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
_COPY_RESULTS = f"COPY hook_results ({', '.join(RESULT_COLUMNS)}, result) FROM STDIN"
_TRACEBACK = RESULT_COLUMNS.index("traceback")


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    out = {c: row[c] for c in RESULT_COLUMNS}
    encoded = row["result_json"]
    out["result"] = None if encoded is None else json.loads(encoded)
    return out
