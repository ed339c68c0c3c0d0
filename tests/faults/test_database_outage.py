"""PostgreSQL unreachable for a while: the worker reaches it through a TCP proxy the test
controls, which drops every connection and refuses new ones, then lets them through again.
Batches retry with backoff and complete afterwards; nothing is marked done that was not stored;
each event's results are stored once."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select

from services_ai_plugins.infra.models import EventRecord, HookResult
from tests.integration import COUNTER_PERMISSIONS, Deployment, MakePlugin, call_log, lead, wait_for

pytestmark = pytest.mark.integration


class Proxy:
    """Forwards 127.0.0.1:<port> to ``target``; :meth:`cut` drops every connection and refuses
    new ones (as a database host gone from the network does) until :meth:`restore`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = threading.Event()
        self.open.set()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()  # refused: the database is "away"
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns.difference_update((source, sink))

    def cut(self) -> None:
        self.open.clear()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def proxy(database_url: str) -> Iterator[Proxy]:
    parts = urlsplit(database_url)
    p = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield p
    p.close()


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def test_batches_wait_out_a_database_outage_and_complete(
    deployment: Deployment, proxy: Proxy, make_plugin: MakePlugin
) -> None:
    log = call_log("outage")
    plugin = deployment.install(
        make_plugin("outage-counter", log.source(), permissions=COUNTER_PERMISSIONS),
        grants=COUNTER_PERMISSIONS,
    )
    worker = deployment.start_worker(
        "outage",
        DATABASE_URL=_through(deployment.database_url, proxy.port),
        SERVICES_AI_VISIBILITY_TIMEOUT="3",
        SERVICES_AI_EVENT_MAX_ATTEMPTS="20",  # an outage of seconds must not exhaust them
    )
    before = deployment.publish_all(lead(i) for i in range(50))
    deployment.wait_done(before)

    proxy.cut()
    during = deployment.publish_all(lead(1000 + i) for i in range(150))
    cut_at = time.monotonic()
    while time.monotonic() - cut_at < 6.0:  # the worker keeps trying; nothing can be stored
        with deployment.host.db.session() as s:
            done = set(
                s.scalars(
                    select(EventRecord.event_id).where(
                        EventRecord.event_id.in_(during), EventRecord.status == "done"
                    )
                )
            )
            with_results = set(s.scalars(select(HookResult.event_id).where(HookResult.event_id.in_(during))))
        assert done <= with_results  # nothing marked done without its results
        assert worker.exit_code is None
        time.sleep(0.5)
    assert not done, "events were stored during the outage: the worker did not go through the proxy"
    proxy.restore()
    deployment.wait_done(during, timeout=180)
    rows = deployment.results(plugin, [*before, *during])
    assert len(rows) == 200 == len({r.event_id for r in rows})  # each stored once
    with deployment.host.db.session() as s:
        dead = s.scalar(select(func.count()).select_from(EventRecord).where(EventRecord.status == "dead"))
    assert dead == 0
    wait_for(lambda: worker.exit_code is None, "the worker to be alive", timeout=1)
    print("\ndatabase outage: 6 s; 150 events published during it; all processed after, results once each")
