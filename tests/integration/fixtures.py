"""Fixtures of the integration and the fault tests (``tests/integration``, ``tests/faults``; each
conftest imports them from here): a fresh PostgreSQL database per test, a flushed Redis
database, a purged RabbitMQ, and a :class:`Deployment` that starts real worker processes.

A service that cannot be reached fails the test with a message saying which; nothing here ever
skips. When a test fails, the log of each worker it started is attached to the report.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection

from services_ai_plugins.infra.broker import QUEUES
from tests.helpers import manifest_for, write_plugin
from tests.integration import AMQP_URL, REDIS_URL, Deployment, MakePlugin
from tests.postgres import database_url_of, throwaway_database

WORKERS = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """On failure, attach the tail of every worker's log to the report."""
    report: pytest.TestReport = yield
    if report.failed:
        for worker in item.stash.get(WORKERS, []):
            report.sections.append((f"worker {worker.name} log (tail)", worker.tail()))
    return report


# -- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A database migrated once per run; each test gets a copy (CREATE DATABASE ... TEMPLATE)."""
    with throwaway_database("sai_it_tmpl", purpose="the integration tests") as name:
        yield name


@pytest.fixture
def database_url(postgres_template: str) -> Iterator[str]:
    """A migrated database of this test's own, dropped afterwards (workers included)."""
    with throwaway_database("sai_it", template=postgres_template) as name:
        yield database_url_of(name)


# -- brokers --------------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The integration Redis database, flushed before (and after) the test."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is required by the integration tests and is not reachable at {REDIS_URL}: {exc}",
            pytrace=False,
        )
    client.flushdb()
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the integration Redis database, to look at what the broker holds."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=10)
    yield client
    client.close()


def purge_amqp_queues(url: str, queues: Iterable[str] = QUEUES) -> None:
    """Empty the project's queues on RabbitMQ (those that exist)."""
    try:
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=2)
            for name in queues:
                channel = conn.channel()
                try:
                    channel.queue_purge(name)
                except conn.channel_errors:
                    pass  # the queue does not exist yet: nothing to purge
                finally:
                    with contextlib.suppress(Exception):  # closed by the broker's error already
                        channel.close()
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ is required by the integration tests and is not reachable at {url}: {exc}",
            pytrace=False,
        )


@pytest.fixture
def amqp_url() -> Iterator[str]:
    purge_amqp_queues(AMQP_URL)
    yield AMQP_URL
    purge_amqp_queues(AMQP_URL)


# -- deployments ----------------------------------------------------------------------------


def _deployment(
    request: pytest.FixtureRequest, root: Path, database_url: str, broker_env: dict[str, str]
) -> Iterator[Deployment]:
    deployment = Deployment(root, database_url, broker_env)
    request.node.stash[WORKERS] = deployment.workers
    try:
        yield deployment
    finally:
        deployment.close()


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, redis_url: str
) -> Iterator[Deployment]:
    """Redis as the broker, PostgreSQL as the database; workers are started by the test."""
    yield from _deployment(request, tmp_path, database_url, {"REDIS_URL": redis_url})


@pytest.fixture
def rabbit_deployment(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, amqp_url: str
) -> Iterator[Deployment]:
    """RabbitMQ as the broker (``BROKER_URL``), PostgreSQL as the database."""
    yield from _deployment(request, tmp_path, database_url, {"BROKER_URL": amqp_url})


# -- plugins --------------------------------------------------------------------------------


@pytest.fixture
def make_plugin(tmp_path: Path) -> MakePlugin:
    """Write a plugin folder: ``make_plugin(plugin_id, main_source, hooks=..., permissions=...)``."""

    def make(
        plugin_id: str,
        main: str,
        hooks: Iterable[str] = ("lead_created",),
        permissions: Iterable[str] = ("lead_access",),
    ) -> Path:
        manifest = manifest_for(
            plugin_id.replace("-", " ").title(),
            id=plugin_id,
            hooks=list(hooks),
            permissions=list(permissions),
        )
        return write_plugin(tmp_path / "plugin-src" / plugin_id, manifest, textwrap.dedent(main))

    return make
