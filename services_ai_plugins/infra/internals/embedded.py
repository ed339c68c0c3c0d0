"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file in the data folder, made
safe against a worker killed at any instant (see :class:`Channel`)."""

# S608: the SQL below names kombu's own message table (a transport option of ours, never user
# input); values always travel as bound parameters.
# ruff: noqa: S608
from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import warnings
from json import dumps, loads
from queue import Empty
from typing import Any

from kombu.transport import sqlalchemy as kombu_sql
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from services_ai_plugins.infra.db import private_sqlite_file
from services_ai_plugins.procstat import start_time

__all__ = ["PRIVATE_NAMES", "Channel", "Transport"]

log = logging.getLogger(__name__)
# kombu's models use a loader strategy SQLAlchemy 2.1 deprecates; nothing here relies on it.
warnings.filterwarnings("ignore", message=".*``noload`` loader strategy is deprecated")

#: (object, attribute): every private name this module relies on.
PRIVATE_NAMES: list[tuple[Any, str]] = [
    (kombu_sql.Channel, "_engine_from_config"),
    (kombu_sql.Channel, "_get"),
    (kombu_sql.Channel, "_put"),
    (kombu_sql.Channel, "_restore"),
    (kombu_sql.Channel, "_size"),
    (kombu_sql.Channel, "_get_or_create"),
    (kombu_sql.Channel, "_configure_entity_tablenames"),
    (kombu_sql, "metadata"),
]


#: Transport options that are ours, not ``create_engine`` arguments (kombu passes every option
#: it does not know to ``create_engine``).
_OWN_OPTIONS = frozenset(
    {
        "polling_interval", "sweep_interval", "busy_timeout", "visibility_timeout",
        "queue_tablename", "message_tablename", "callback", "errback", "max_retries",
        "interval_start", "interval_step", "interval_max", "retry_errors", "body_encoding",
    }
)  # fmt: skip
_HOST = socket.gethostname()


_tokens: dict[int, str] = {}


def _owner() -> str:
    """Who holds a claim: host, pid and the pid's start time (a reused pid is not its owner)."""
    pid = os.getpid()
    token = _tokens.get(pid)
    if token is None:
        token = _tokens[pid] = f"{_HOST}:{pid}:{start_time(pid) or '?'}"
    return token


def _alive(token: str) -> bool:
    host, pid, started = token.rsplit(":", 2)
    if host != _HOST:
        return True  # another machine's: only its own sweep can tell
    if started != "?":  # Linux: pid and start time, so a reused pid is not mistaken for it
        return start_time(int(pid)) == started
    try:  # no /proc: the pid alone
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _redelivered(payload: str) -> str:
    message = loads(payload)
    message.setdefault("headers", {})["redelivered"] = True
    message.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
    return dumps(message)


class Channel(kombu_sql.Channel):
    """kombu's SQLAlchemy channel, with claims that survive the consumer.

    kombu marks a taken message invisible and never looks at it again, so a worker killed with
    SIGKILL loses what it held; and it never deletes acknowledged rows. Here taking a message
    also records who took it (``kombu_claim``), in the same transaction; acknowledging deletes
    the row; a consumer's sweep (at start and every ``sweep_interval`` seconds) makes the
    messages of claimants that no longer run visible again. Acknowledgements may arrive from
    another thread (the prefork pool's result handler), so they are queued and applied by the
    consuming thread: the SQLAlchemy session is never shared between threads. An empty poll
    is a plain read unless another process committed since (SQLite's ``data_version``).
    """

    _last_sweep = 0.0

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        options = connection.client.transport_options
        self.sweep_interval = float(options.get("sweep_interval", 5.0))
        self._rows: dict[str, int] = {}  # delivery tag -> message row
        self._queue_ids: dict[str, int] = {}
        self._empty: dict[str, tuple[int, int, float]] = {}  # queue -> (connection, data_version, when)
        self._pending: collections.deque[tuple[str, int]] = collections.deque()
        self._lock = threading.RLock()

    def _engine_from_config(self) -> Engine:
        info = self.connection.client
        options = {k: v for k, v in info.transport_options.items() if k not in _OWN_OPTIONS}
        busy_ms = int(float(info.transport_options.get("busy_timeout", 30.0)) * 1000)
        url = make_url(info.hostname)
        if url.get_backend_name() == "sqlite":
            private_sqlite_file(url.database)  # the data folder, on first use; the host's alone
        engine = create_engine(url, **options)
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout={busy_ms}")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        table = self.message_tablename
        with engine.begin() as conn:
            kombu_sql.metadata.create_all(conn)  # type: ignore[attr-defined]
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS kombu_claim ("
                    " message_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, claimed_at REAL NOT NULL)"
                )
            )
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_kombu_claim_owner ON kombu_claim (owner)"))
            conn.execute(
                text(f"CREATE INDEX IF NOT EXISTS ix_{table}_qvi ON {table} (queue_id, visible, id)")
            )
        return engine

    def _queue_id(self, queue: str) -> int:
        qid = self._queue_ids.get(queue)
        if qid is None:
            qid = self._queue_ids[queue] = int(self._get_or_create(queue).id)
        return qid

    def _get(self, queue: str, timeout: Any = None) -> Any:
        with self._lock:
            self._apply_pending()
            now = time.time()
            if now - self._last_sweep >= self.sweep_interval:
                self._last_sweep = now
                self.sweep()
            qid = self._queue_id(queue)
            s = self.session
            table = self.message_tablename
            conn = s.connection()
            seen = (
                id(conn.connection.dbapi_connection),
                int(conn.exec_driver_sql("PRAGMA data_version").scalar()),
            )
            empty = self._empty.get(queue)
            if empty is not None and empty[:2] == seen and now - empty[2] < 1.0:
                s.commit()  # nothing was committed since this queue was found empty
                raise Empty()
            for _ in range(5):
                row = s.execute(
                    text(f"SELECT id FROM {table} WHERE queue_id=:q AND visible=1 ORDER BY id LIMIT 1"),
                    {"q": qid},
                ).first()
                if row is None:
                    s.commit()
                    self._empty[queue] = (*seen, now)
                    raise Empty()
                try:
                    s.execute(text("BEGIN IMMEDIATE"))
                    taken = s.execute(
                        text(f"UPDATE {table} SET visible=0 WHERE id=:id AND visible=1"), {"id": row.id}
                    ).rowcount
                    if taken != 1:  # another consumer took it first
                        s.commit()
                        continue
                    s.execute(
                        text(
                            "INSERT OR REPLACE INTO kombu_claim (message_id, owner, claimed_at) VALUES (:id, :o, :t)"
                        ),
                        {"id": row.id, "o": _owner(), "t": now},
                    )
                    payload = s.execute(
                        text(f"SELECT payload FROM {table} WHERE id=:id"), {"id": row.id}
                    ).scalar_one()
                    s.commit()
                except Exception:
                    s.rollback()
                    raise
                message = loads(bytes_to_str(payload))
                tag = message.get("properties", {}).get("delivery_tag")
                if tag is not None:
                    self._rows[tag] = row.id
                return message
            raise Empty()

    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        super()._put(queue, payload, **kwargs)
        self._empty.clear()

    def _apply_pending(self) -> None:
        if not self._pending:
            return
        self._empty.clear()
        ops = []
        while self._pending:
            ops.append(self._pending.popleft())
        s = self.session
        table = self.message_tablename
        try:
            s.execute(text("BEGIN IMMEDIATE"))
            for op, rid in ops:
                if op == "ack":
                    s.execute(text(f"DELETE FROM {table} WHERE id=:id"), {"id": rid})
                else:  # requeued (a pool process died, a warm shutdown): delivered before
                    payload = s.execute(
                        text(f"SELECT payload FROM {table} WHERE id=:id"), {"id": rid}
                    ).scalar()
                    if payload is not None:
                        s.execute(
                            text(f"UPDATE {table} SET visible=1, payload=:p WHERE id=:id"),
                            {"p": _redelivered(payload), "id": rid},
                        )
                s.execute(text("DELETE FROM kombu_claim WHERE message_id=:id"), {"id": rid})
            s.commit()
        except Exception:
            s.rollback()
            self._pending.extendleft(reversed(ops))
            raise

    def sweep(self) -> int:
        """Make the messages claimed by processes that no longer run visible again."""
        s = self.session
        owners = [r[0] for r in s.execute(text("SELECT DISTINCT owner FROM kombu_claim"))]
        dead = [o for o in owners if o != _owner() and not _alive(o)]
        if not dead:
            s.commit()
            return 0
        keys = {f"o{i}": o for i, o in enumerate(dead)}
        where = f"owner IN ({', '.join(':' + k for k in keys)})"
        table = self.message_tablename
        try:
            s.execute(text("BEGIN IMMEDIATE"))
            held = s.execute(
                text(
                    f"SELECT id, payload FROM {table} WHERE id IN (SELECT message_id FROM kombu_claim WHERE {where})"
                ),
                keys,
            ).all()
            for rid, payload in held:
                # Marked as delivered before, as kombu's Redis transport marks what it restores:
                # the worker then looks up what was stored the first time.
                s.execute(
                    text(f"UPDATE {table} SET visible=1, payload=:p WHERE id=:id"),
                    {"p": _redelivered(payload), "id": rid},
                )
            s.execute(text(f"DELETE FROM kombu_claim WHERE {where}"), keys)
            s.commit()
            restored = len(held)
        except Exception:
            s.rollback()
            raise
        self._empty.clear()
        if restored:
            log.warning("embedded broker: %d message(s) of a stopped worker queued again", restored)
        return restored

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        rid = self._rows.pop(delivery_tag, None)
        if rid is not None:
            self._pending.append(("ack", rid))
        super().basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if not requeue:
            rid = self._rows.pop(delivery_tag, None)
            if rid is not None:
                self._pending.append(("ack", rid))
        super().basic_reject(delivery_tag, requeue=requeue)

    def _restore(self, message: Any) -> None:
        rid = self._rows.pop(message.delivery_tag, None)
        if rid is None:
            super()._restore(message)
            return
        self._pending.append(("restore", rid))  # the same row, visible again (kombu copies it)

    def close(self) -> None:
        super().close()  # restores what it holds into the pending operations
        try:
            with self._lock:
                self._apply_pending()
        except Exception:
            log.warning("embedded broker: could not settle on close; the sweep will", exc_info=True)

    def _size(self, queue: str) -> int:
        qid = self._queue_id(queue)
        n = self.session.execute(
            text(f"SELECT count(*) FROM {self.message_tablename} WHERE queue_id=:q AND visible=1"), {"q": qid}
        ).scalar_one()
        self.session.commit()
        return int(n)


class Transport(kombu_sql.Transport):
    Channel = Channel
