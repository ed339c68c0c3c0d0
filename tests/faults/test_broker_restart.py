"""The broker restarted under load: a throwaway redis-server on a port of its own, with
append-only persistence (fsync on every write), killed with SIGKILL and started again on the same
files while events are published and consumed. Every event ``publish()`` confirmed is processed,
its results stored once; a broker that stays down gives the publisher a clear error within its
configured retries."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from services_ai_plugins.errors import BrokerUnavailableError
from services_ai_plugins.publisher import Publisher
from tests.integration import COUNTER_PERMISSIONS, Deployment, MakePlugin, call_log, lead, wait_for
from tests.integration.fixtures import _deployment

pytestmark = pytest.mark.integration

PORTS = range(6393, 6400)  # the throwaway servers' ports (the machine's Redis is on 6379)


class RedisServer:
    """A redis-server of the test's own, on ``port``, persisting to ``folder`` (AOF)."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("the broker-restart tests need redis-server on PATH", pytrace=False)
        self.proc = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--logfile", str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_for(lambda: _answers(client), f"redis-server on port {self.port} to answer", timeout=20)
        client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _free_port() -> int:
    for port in PORTS:
        client = redis.Redis(port=port, socket_connect_timeout=0.3)
        try:
            client.ping()
        except redis.ConnectionError:
            return port
        finally:
            client.close()
    pytest.fail(f"no free port for a throwaway redis-server in {PORTS.start}-{PORTS.stop - 1}", pytrace=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    s = RedisServer(_free_port(), tmp_path / "redis")
    s.start()
    yield s
    s.stop()


@pytest.fixture
def restart_deployment(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, server: RedisServer
) -> Iterator[Deployment]:
    yield from _deployment(request, tmp_path / "deployment", database_url, {"REDIS_URL": server.url})


def test_every_confirmed_event_is_processed_across_broker_restarts(
    restart_deployment: Deployment, server: RedisServer, make_plugin: MakePlugin
) -> None:
    deployment = restart_deployment
    log = call_log("restart")
    plugin = deployment.install(
        make_plugin("restart-counter", log.source(), permissions=COUNTER_PERMISSIONS),
        grants=COUNTER_PERMISSIONS,
    )
    deployment.start_worker("restart", SERVICES_AI_VISIBILITY_TIMEOUT="3")
    total, confirmed, refused = 400, [], []

    def publish_all() -> None:
        for i in range(total):
            try:
                confirmed.append(deployment.publisher.publish(lead(i)))
            except BrokerUnavailableError as exc:
                refused.append(str(exc))
            time.sleep(0.01)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    restarts = 0
    for _ in range(3):
        time.sleep(1.0)
        server.kill()  # SIGKILL: only what the append-only file holds survives
        time.sleep(0.5)
        server.start()
        restarts += 1
    publisher.join(timeout=120)
    assert not publisher.is_alive()
    deployment.wait_done(confirmed, timeout=180)
    rows = deployment.results(plugin, confirmed)
    assert len(rows) == len(confirmed) == len({r.event_id for r in rows})  # each once
    assert all(r.status == "success" for r in rows)
    print(
        f"\nbroker restarts: {restarts}; events published {total}: confirmed {len(confirmed)}, "
        f"refused with an error {len(refused)}; lost 0; results stored once each"
    )
    assert len(confirmed) + len(refused) == total
    for reason in refused:  # a refusal says which broker and why, in one line
        assert reason.startswith(f"the broker at redis://127.0.0.1:{server.port}/0 did not accept event")


def test_a_broker_that_stays_down_is_a_clear_error_within_the_retries(
    restart_deployment: Deployment, server: RedisServer
) -> None:
    server.kill()
    publisher = Publisher(restart_deployment.config, max_retries=2)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as caught:
        publisher.publish(lead(1))
    took = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith(f"the broker at redis://127.0.0.1:{server.port}/0 did not accept event ")
    assert "after 3 tries" in message and "\n" not in message
    assert took < 30, took  # bounded by its retries, not hanging
