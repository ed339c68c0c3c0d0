"""Data exports: ``data_export`` on every plugin holding the permission (and, for leads and
bookings, the data's own access permission), rows stored, fetched as CSV or JSON.

A plugin receives the platform's records of the export type in the date range as
``context["records"]`` (leads from ``lead.created`` events, bookings at their latest state) and
returns rows: a list of flat JSON objects.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

from sqlalchemy import delete, insert, select, update
from typing_extensions import TypedDict

from services_ai_plugins.calling.caller import HookCaller
from services_ai_plugins.calling.requests import export_call
from services_ai_plugins.dates import parse_day
from services_ai_plugins.errors import InputError, NotFoundError, PluginStateError
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import EventRecord, ExportJob, ExportRow, utcnow
from services_ai_plugins.lifecycle.runtime import PluginRuntime

__all__ = ["FORMATS", "ExportService", "ExportView", "csv_cell"]

HOOK = "data_export"
EXPORT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_RECORDS = 50_000
FORMATS = ("csv", "json")
# A cell starting with one of these is read as a formula by spreadsheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
Progress = Callable[[int, int], None]


class ExportView(TypedDict):
    """An export: its request, its state, and each plugin's contribution
    (``{plugin_id: {status, rows, error, duration_ms}}``)."""

    id: str
    export_type: str
    start_date: str | None
    end_date: str | None
    filters: dict[str, Any]
    status: str
    requested_by: str | None
    created_at: str
    finished_at: str | None
    error: str | None
    row_count: int
    plugins: dict[str, Any]


def csv_cell(value: Any) -> str:
    """A value as a CSV cell: nested data as JSON, and never a live spreadsheet formula."""
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return text


class ExportService:
    """Exports: created by anyone allowed, run by a worker (or here with ``--now``), downloaded
    from the database."""

    def __init__(
        self,
        db: Database,
        runtime: Callable[[], PluginRuntime] | None = None,
        caller: Callable[[], HookCaller] | None = None,
    ) -> None:
        self.db = db
        self._runtime = runtime
        self._caller = caller

    def create(
        self,
        export_type: str,
        start: str | None = None,
        end: str | None = None,
        filters: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> str:
        if not isinstance(export_type, str) or not EXPORT_TYPE_RE.match(export_type):
            raise InputError(
                "export type", f"{str(export_type)[:40]!r} is not a name (lower-case letters, digits, _)"
            )
        start_day, end_day = parse_day(start, "since"), parse_day(end, "until")
        if start_day and end_day and end_day < start_day:
            raise InputError("until", "is before since")
        if filters is not None and not isinstance(filters, dict):
            raise InputError("filters", "must be a JSON object")
        export_id = str(uuid.uuid4())
        with self.db.session() as s:
            s.add(
                ExportJob(
                    id=export_id,
                    export_type=export_type,
                    start_date=start_day.isoformat() if start_day else None,
                    end_date=end_day.isoformat() if end_day else None,
                    filters=filters or {},
                    status="pending",
                    requested_by=actor,
                    created_at=utcnow(),
                    plugins={},
                )
            )
        return export_id

    def get(self, export_id: str) -> ExportView:
        with self.db.session() as s:
            job = s.get(ExportJob, export_id)
            if job is None:
                raise NotFoundError("export", export_id)
            return _view(job)

    def recent(self, limit: int = 20) -> list[ExportView]:
        with self.db.session() as s:
            return [
                _view(j)
                for j in s.scalars(select(ExportJob).order_by(ExportJob.created_at.desc()).limit(limit))
            ]

    def run(self, export_id: str, progress: Progress | None = None) -> ExportView:
        """Call every permitted plugin and store its rows. Safe to run again (rows replaced).

        The date range is inclusive: ``since`` from 00:00 UTC, ``until`` to the end of that day.
        """
        if self._runtime is None or self._caller is None:
            raise PluginStateError("*", "exports are run by workers; this process only reads them")
        job = self.get(export_id)
        with self.db.session() as s:
            s.execute(update(ExportJob).where(ExportJob.id == export_id).values(status="running"))
            s.execute(delete(ExportRow).where(ExportRow.export_id == export_id))
        runtime, caller = self._runtime(), self._caller()
        runtime.refresh()
        export_type = job["export_type"]
        targets = runtime.targets(HOOK, export_type)
        start = parse_day(job["start_date"], "since")
        end = parse_day(job["end_date"], "until")
        records = self._records(export_type, start, end)
        call = export_call(
            export_type,
            start.isoformat() if start else None,
            end.isoformat() if end else None,
            job["filters"],
            records,
        )
        summary: dict[str, Any] = {}
        total = 0
        for n, target in enumerate(targets, 1):
            outcome = caller.call(HOOK, target, [call])[0]
            entry: dict[str, Any] = {
                "status": outcome.status,
                "rows": 0,
                "error": outcome.error,
                "duration_ms": outcome.duration_ms,
            }
            if outcome.ok:
                rows = outcome.result
                self._store(export_id, target.plugin_id, rows)
                entry["rows"] = len(rows)
                total += len(rows)
            summary[target.plugin_id] = entry
            if progress:
                progress(n, len(targets))
        status = (
            "done" if not targets or any(e["status"] == "success" for e in summary.values()) else "failed"
        )
        with self.db.session() as s:
            s.execute(
                update(ExportJob)
                .where(ExportJob.id == export_id)
                .values(
                    status=status,
                    plugins=summary,
                    row_count=total,
                    finished_at=utcnow(),
                    error=None if targets else "no plugin holds the permissions for this export",
                )
            )
        return self.get(export_id)

    def _records(self, export_type: str, start: date | None, end: date | None) -> list[dict[str, Any]]:
        kinds = {"leads": ("lead.created",), "bookings": ("booking.created", "booking.updated")}.get(
            export_type
        )
        if not kinds:
            return []
        stmt = (
            select(EventRecord.payload).where(EventRecord.type.in_(kinds)).order_by(EventRecord.occurred_at)
        )
        if start:
            stmt = stmt.where(EventRecord.occurred_at >= datetime.combine(start, datetime.min.time(), UTC))
        if end:
            stmt = stmt.where(
                EventRecord.occurred_at < datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
            )
        latest: dict[str, dict[str, Any]] = {}
        with self.db.session() as s:
            for payload in s.scalars(stmt.limit(MAX_RECORDS)):
                data = dict(payload.get("data") or {})
                data.pop("previous_state", None)
                latest[str(data.get("id"))] = data  # bookings: the latest state wins
        return list(latest.values())

    def _store(self, export_id: str, plugin_id: str, rows: list[dict[str, Any]]) -> None:
        with self.db.session() as s:
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                s.execute(
                    insert(ExportRow),
                    [
                        {"export_id": export_id, "plugin_id": plugin_id, "seq": start + i, "data": row}
                        for i, row in enumerate(chunk)
                    ],
                )

    def rows(self, export_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        self.get(export_id)
        with self.db.session() as s:
            stmt = (
                select(ExportRow.plugin_id, ExportRow.data)
                .where(ExportRow.export_id == export_id)
                .order_by(ExportRow.plugin_id, ExportRow.seq)
                .execution_options(yield_per=1000)
            )
            for plugin_id, data in s.execute(stmt):
                yield str(plugin_id), dict(data)

    def write(self, export_id: str, out: IO[str], fmt: str = "csv", progress: Progress | None = None) -> int:
        """Write the export as CSV (one column per key, ``plugin_id`` first) or JSON lines."""
        if fmt not in FORMATS:
            raise InputError("format", f"{fmt!r} is not csv or json")
        job = self.get(export_id)
        if job["status"] not in ("done",):
            raise PluginStateError("*", f"export {export_id} is {job['status']}, not done")
        total = job["row_count"]
        if fmt == "json":
            n = 0
            out.write("[\n")
            for n, (plugin_id, data) in enumerate(self.rows(export_id), 1):
                out.write(("," if n > 1 else "") + json.dumps({"plugin_id": plugin_id, **data}) + "\n")
                if progress:
                    progress(n, total)
            out.write("]\n")
            return n
        columns: list[str] = ["plugin_id"]
        seen = set(columns)
        for _, data in self.rows(export_id):
            for key in data:
                if key not in seen:
                    seen.add(key)
                    columns.append(key)
        writer = csv.writer(out)
        writer.writerow(columns)
        n = 0
        for n, (plugin_id, data) in enumerate(self.rows(export_id), 1):
            row = {"plugin_id": plugin_id, **data}
            writer.writerow([csv_cell(row.get(c)) for c in columns])
            if progress:
                progress(n, total)
        return n

    def render(self, export_id: str, fmt: str = "csv") -> str:
        buf = io.StringIO()
        self.write(export_id, buf, fmt)
        return buf.getvalue()


def _view(job: ExportJob) -> ExportView:
    return {
        "id": job.id,
        "export_type": job.export_type,
        "start_date": job.start_date,
        "end_date": job.end_date,
        "filters": job.filters,
        "status": job.status,
        "requested_by": job.requested_by,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
        "row_count": job.row_count,
        "plugins": job.plugins,
    }
