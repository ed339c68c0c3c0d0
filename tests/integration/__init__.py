"""Integration tests: real Celery workers (subprocesses), Redis, PostgreSQL and RabbitMQ.

This module holds the helpers the tests share (the fixtures are in ``conftest.py``): a worker
process we can start, kill and read the log of, a polling ``wait_for``, and event factories.
Every wait polls with a generous deadline; nothing asserts on how long something took except
the explicit propagation bound of the registry test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from sqlalchemy import func, select, text

from services_ai_plugins.host import Host
from services_ai_plugins.infra.models import EventRecord, HookResult
from services_ai_plugins.publisher import Publisher
from tests.helpers import REPO, SECRET_KEY, make_config

T = TypeVar("T")

# The scripts of the interpreter running the tests (the project's virtualenv).
VENV_BIN = (
    Path(sys.executable).parent
    if (Path(sys.executable).parent / "celery").exists()
    else REPO / ".venv" / "bin"
)
CELERY = VENV_BIN / "celery"
SERVICES_AI = VENV_BIN / "services-ai"
QUEUE_ARGS = "events,widgets,exports,lifecycle"

#: A Redis logical database of its own: queue names are fixed, so each test flushes it.
REDIS_URL = os.environ.get("TEST_INTEGRATION_REDIS_URL", "redis://127.0.0.1:6379/14")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

READY_TIMEOUT = 90.0  # a cold worker start on a busy 2-core machine can take a while
DONE_TIMEOUT = 120.0


# -- waiting --------------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], T],
    what: str,
    timeout: float = DONE_TIMEOUT,
    interval: float = 0.1,
    workers: Iterable[Worker] = (),
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail the test.

    A worker among ``workers`` that exits while we wait fails the test at once, with its code.
    """
    watched = list(workers)
    explain = (lambda: "") if on_timeout is None else on_timeout
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for worker in watched:
            code = worker.exit_code
            if code is not None:
                pytest.fail(
                    f"worker {worker.name} exited (code {code}) while waiting for {what}. {explain()}"
                )
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g}s waiting for {what}. {explain()}".rstrip())
        time.sleep(interval)


# -- workers --------------------------------------------------------------------------------


@dataclass
class Worker:
    """One ``celery -A workers worker`` subprocess: a "host" with its own data folder.

    It runs in a session of its own so that :meth:`kill` can SIGKILL the main process and its
    pool children together; its stdout and stderr go to ``log_path``.
    """

    name: str
    env: dict[str, str]
    data_dir: Path
    log_path: Path
    concurrency: int = 2
    pool: str = "prefork"
    queues: str = QUEUE_ARGS
    #: More options of ``celery worker`` (e.g. ``-E`` for task events), after the usual ones.
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def command(self) -> list[str]:
        return [
            str(CELERY),
            "-A",
            "workers",
            "worker",
            "-P",
            self.pool,
            "-c",
            str(self.concurrency),
            "-Q",
            self.queues,
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "INFO",  # 'ready.' is logged at INFO; readiness is read from the log
            "-n",
            f"{self.name}@%h",
            *self.extra_args,
        ]

    def start(self) -> Worker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Worker:
        wait_for(
            lambda: " ready." in self.log(),
            f"worker {self.name} to log 'ready.'",
            timeout=timeout,
            workers=[self],
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"worker {self.name} was never started"
        return self.proc.pid

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 150) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and pool children), no clean-up."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def freeze(self) -> None:
        """SIGSTOP the main process (its pool children keep running) and wait until it is
        stopped: then nothing moves between it and the broker."""
        os.kill(self.pid, signal.SIGSTOP)
        wait_for(self._stopped, f"worker {self.name} to stop", timeout=10, interval=0.001)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def _stopped(self) -> bool:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] in ("T", "t", "Z")

    def terminate(self) -> None:
        """Ask for a warm shutdown (SIGTERM to the main process)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it frozen

    def stop(self, grace: float = 20.0) -> None:
        """Warm shutdown, then SIGKILL whatever is left of the process group."""
        if self.proc is None:
            return
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)
        self._signal_group(signal.SIGKILL)  # pool children that outlived their parent
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WebServer(Worker):
    """``services-ai web`` as a subprocess on a free port of 127.0.0.1, stopped and reported
    like a worker."""

    port: int = 0

    @property
    def command(self) -> list[str]:
        return [str(SERVICES_AI), "web", "--host", "127.0.0.1", "--port", str(self.port)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> WebServer:
        def answers() -> bool:
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, "the web app to answer /healthz", timeout=timeout, interval=0.2, workers=[self])
        return self


# -- events ---------------------------------------------------------------------------------

_BASE = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Radia"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Perlman"]


def lead(i: int, **data: Any) -> dict[str, Any]:
    """A ``lead.created`` event with personal data (name, email, phone)."""
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    body: dict[str, Any] = {
        "id": f"L-{i}",
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}.{i}@example.com",
        "phone": f"+1 555 {i:07d}",
        "company": "Acme Plumbing" if i % 3 == 0 else None,
        "source": "website",
    }
    body.update(data)
    return {"type": "lead.created", "source": "integration-test", "data": body}


def _booking(i: int, status: str = "pending") -> dict[str, Any]:
    starts = _BASE + timedelta(days=i % 30, hours=i % 8)
    return {
        "id": f"B-{i}",
        "lead_id": f"L-{i}",
        "service": "Boiler service",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(minutes=60)).isoformat(),
        "status": status,
        "price": 99.0,
    }


def booking_created(i: int) -> dict[str, Any]:
    return {"type": "booking.created", "source": "integration-test", "data": _booking(i)}


def booking_updated(i: int) -> dict[str, Any]:
    before = _booking(i)
    after = {**before, "status": "confirmed"}
    return {
        "type": "booking.updated",
        "source": "integration-test",
        "data": {**after, "previous_state": before},
    }


def mixed_events(count: int) -> list[dict[str, Any]]:
    """Half leads, a quarter new bookings, a quarter booking changes."""
    makers = (lead, booking_created, lead, booking_updated)
    return [makers[i % len(makers)](i) for i in range(count)]


# -- plugins --------------------------------------------------------------------------------

# Appends the event id to a log file of its own on every call (O_APPEND: one whole line per
# write, even from several processes), so the test can count calls.
COUNTER = """
import os
import time

import redis

from services_ai_plugins import hookimpl

CALLS = redis.Redis.from_url({url!r})

@hookimpl
def lead_created(lead, context):
    time.sleep({sleep})
    CALLS.rpush({key!r}, context["event"]["event_id"])
    return {{"status": "success", "pid": os.getpid()}}
"""
#: A counting plugin calls out to Redis (it holds ``network``): the one side channel that
#: works from inside a sandbox, whose files and /tmp are its own.
COUNTER_PERMISSIONS = ("lead_access", "network")


@dataclass(frozen=True)
class CallLog:
    """Where a ``COUNTER`` plugin records each call: a Redis list of event ids."""

    key: str

    def source(self, sleep: float = 0.0) -> str:
        return COUNTER.format(url=REDIS_URL, key=self.key, sleep=sleep)


def call_log(name: str) -> CallLog:
    return CallLog(f"calls:{name}:{uuid.uuid4().hex}")


def calls(log: CallLog) -> Counter[str]:
    """How many times a ``COUNTER`` plugin was called for each event id."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return Counter(item.decode() for item in client.lrange(log.key, 0, -1))
    finally:
        client.close()


#: ``make_plugin(plugin_id, main_source, hooks=..., permissions=...)`` (a fixture) -> folder.
MakePlugin = Callable[..., Path]

HOOK_OF = {
    "lead.created": "lead_created",
    "booking.created": "booking_created",
    "booking.updated": "booking_updated",
}


# -- the deployment under test --------------------------------------------------------------


class Deployment:
    """One deployment as the tests see it: a database and a broker shared by worker processes
    (each a "host" with its own data folder), plus this process's :class:`Host` to manage
    plugins and read results, and a :class:`Publisher` on the same broker."""

    def __init__(self, root: Path, database_url: str, broker_env: dict[str, str]) -> None:
        self.root = root
        self.database_url = database_url
        self.broker_env = dict(broker_env)  # {"REDIS_URL": ...} or {"BROKER_URL": ...}
        self.client_dir = root / "client"
        self.config = make_config(self.client_dir, database_url, **broker_env)
        self.host = Host(self.config).ready()
        self.publisher = Publisher(self.config)
        self.events = self.host.events
        self.workers: list[Worker] = []

    # -- processes ----------------------------------------------------------------------------

    def env(self, data_dir: Path, database_url: str | None = None, **settings: str) -> dict[str, str]:
        """The environment of a worker or CLI process (``settings`` are env names)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SERVICES_AI_") and k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL")
        }
        env.update(
            DATABASE_URL=database_url or self.database_url,
            SERVICES_AI_DATA_DIR=str(data_dir),
            SERVICES_AI_SECRET_KEY=SECRET_KEY,
            SERVICES_AI_REGISTRY_POLL_SECONDS="0.2",
            PYTHONUNBUFFERED="1",
            **self.broker_env,
        )
        env.update(settings)
        return env

    def start_worker(
        self,
        name: str,
        *,
        wait: bool = True,
        pool: str = "prefork",
        queues: str = QUEUE_ARGS,
        args: Iterable[str] = (),
        **settings: str,
    ) -> Worker:
        """Start a worker (a host of its own: data folder ``hosts/<name>``) on ``queues`` (in
        that order) with the ``pool`` given, and wait until it is ready (``wait``). Its
        database connections carry the application name ``sai-it-<name>``; ``args`` are more
        ``celery worker`` options."""
        node = f"{name}-{uuid.uuid4().hex[:6]}"
        data_dir = self.root / "hosts" / name
        url = f"{self.database_url}?application_name={self.application_name(node)}"
        worker = Worker(
            name=node,
            env=self.env(data_dir, database_url=url, **settings),
            data_dir=data_dir,
            log_path=self.root / "logs" / f"{node}.log",
            pool=pool,
            queues=queues,
            extra_args=tuple(args),
        )
        worker.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.workers.append(worker)
        worker.start()
        if wait:
            worker.wait_ready()
        return worker

    def start_web(self, **settings: str) -> WebServer:
        """``services-ai web`` on this deployment's database and broker, ready."""
        data_dir = self.root / "web"
        server = WebServer(
            name="web",
            env=self.env(data_dir, **settings),
            data_dir=data_dir,
            log_path=self.root / "logs" / "web.log",
            port=free_port(),
        )
        server.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.workers.append(server)
        server.start()
        return server.wait_ready()

    @staticmethod
    def application_name(node: str) -> str:
        return f"sai-it-{node}"

    def wait_disconnected(self, worker: Worker, timeout: float = 30.0) -> None:
        """Wait until PostgreSQL has no session of ``worker`` left: after a kill, whatever it
        committed is then visible and nothing it sent is still being committed."""
        name = self.application_name(worker.name)

        def gone() -> bool:
            with self.host.db.engine.connect() as conn:
                left = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"), {"n": name}
                ).scalar_one()
            return left == 0

        wait_for(gone, f"PostgreSQL sessions of {worker.name} to end", timeout=timeout)

    def cli(
        self, *args: str, expect: int | None = 0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``services-ai`` command with this deployment's environment (``input``
        on its standard input)."""
        done = subprocess.run(
            [str(SERVICES_AI), *args],
            cwd=REPO,
            env=self.env(self.client_dir),
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if expect is not None:
            assert done.returncode == expect, (
                f"services-ai {' '.join(args)} exited {done.returncode}, not {expect}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def close(self) -> None:
        for worker in self.workers:
            worker.terminate()  # all at once: warm shutdowns take a few seconds each
        for worker in self.workers:
            worker.stop()
        self.host.close()

    # -- plugins ------------------------------------------------------------------------------

    def install(self, path: Path, grants: Iterable[str] = (), enable: bool = True) -> str:
        """Install a plugin, grant it ``grants`` and enable it (in that order); its id."""
        registry = self.host.registry
        plugin_id = registry.install(path, actor="integration-test").plugin.id
        for permission in grants:
            registry.grant(plugin_id, permission, actor="integration-test")
        if enable:
            registry.enable(plugin_id, actor="integration-test")
        return plugin_id

    def current_sha256(self, plugin_id: str) -> str:
        versions = self.host.registry.show(plugin_id).versions or []
        return next(v.sha256 for v in versions if v.current)

    # -- events -------------------------------------------------------------------------------

    def publish_all(self, events: Iterable[dict[str, Any]], threads: int = 4) -> list[str]:
        """Publish through the real :class:`Publisher` (a few threads: it is thread-safe and
        this keeps 2,000 events to a couple of seconds); the event ids, in order."""
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.publisher.publish, events))

    def done_count(self, event_ids: Iterable[str]) -> int:
        ids = list(event_ids)
        with self.host.db.session() as s:
            return int(
                s.scalar(
                    select(func.count()).where(EventRecord.event_id.in_(ids), EventRecord.status == "done")
                )
                or 0
            )

    def wait_done(
        self, event_ids: Iterable[str], timeout: float = DONE_TIMEOUT, interval: float = 0.2
    ) -> None:
        """Wait until every event is stored as ``done`` (failing early if a worker dies)."""
        ids = list(event_ids)
        live = [w for w in self.workers if w.exit_code is None]
        wait_for(
            lambda: self.done_count(ids) == len(ids),
            f"{len(ids)} events to be done (see the state below)",
            on_timeout=lambda: f"{self.done_count(ids)} of {len(ids)} done; broker: {self.broker_state()}",
            timeout=timeout,
            interval=interval,
            workers=live,
        )

    def broker_state(self) -> dict[str, Any]:
        """What the broker holds (Redis: queued and unacknowledged messages), for messages."""
        url = self.broker_env.get("REDIS_URL")
        if url is None:
            return {}
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        try:
            return {
                "queued": {q: client.llen(q) for q in ("events", "widgets", "exports", "lifecycle")},
                "unacked": client.hlen("unacked"),
            }
        except redis.RedisError as exc:
            return {"error": str(exc)}
        finally:
            client.close()

    def results(
        self, plugin_id: str | None = None, event_ids: Iterable[str] | None = None
    ) -> list[HookResult]:
        """Stored result rows, optionally of one plugin and/or some events."""
        stmt = select(HookResult).order_by(HookResult.event_id, HookResult.plugin_id, HookResult.hook)
        if plugin_id is not None:
            stmt = stmt.where(HookResult.plugin_id == plugin_id)
        if event_ids is not None:
            stmt = stmt.where(HookResult.event_id.in_(list(event_ids)))
        with self.host.db.session() as s:
            return list(s.scalars(stmt))

    # -- registry propagation -----------------------------------------------------------------

    def probe(
        self,
        plugin_id: str,
        *,
        called: bool,
        since: float,
        timeout: float = 30.0,
        event: Callable[[int], dict[str, Any]] | None = None,
    ) -> float:
        """Publish one event at a time until ``plugin_id`` is (``called``) or is no longer
        called for it; returns the seconds from ``since`` (a ``time.monotonic()`` taken when
        the registry changed) to the first event that showed the change."""
        make = event or (lambda n: lead(900_000 + n))
        deadline = since + timeout
        n = 0
        while True:
            n += 1
            event_id = self.publisher.publish(make(n))
            self.wait_done([event_id], interval=0.05)
            if bool(self.results(plugin_id, [event_id])) == called:
                return time.monotonic() - since
            if time.monotonic() > deadline:
                state = "called" if called else "left alone"
                pytest.fail(f"{plugin_id} was still not {state} {timeout:g}s after the registry change")

    @staticmethod
    def settle(since: float, poll_seconds: float = 0.2) -> None:
        """Let every worker process catch up with a registry change made at ``since``.

        Each process re-reads the registry revision on its next batch at most
        ``poll_seconds`` after its previous read, so any batch that starts more than one poll
        interval after the change sees it. Five intervals leave room for clock granularity.
        """
        left = since + 5 * poll_seconds - time.monotonic()
        if left > 0:
            time.sleep(left)
