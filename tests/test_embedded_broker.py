"""The embedded broker, on real processes: with neither ``REDIS_URL`` nor ``BROKER_URL`` set,
``services-ai worker``, ``services-ai beat`` and ``services-ai publish``, started as separate
processes, process events through a SQLite file in the data folder. No server is used: the
three run in a network namespace of their own with no network at all. A worker killed with
SIGKILL loses nothing; ``memory://`` from a separate process is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services_ai_plugins.host import Host
from tests.helpers import REPO, SAMPLE_PLUGIN, SECRET_KEY, make_config

SERVICES_AI = [sys.executable, "-m", "services_ai_plugins.cli"]
UNSHARE = shutil.which("unshare")


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICES_AI_")}
    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL"):
        env.pop(name, None)
    env.update(SERVICES_AI_DATA_DIR=str(data), SERVICES_AI_SECRET_KEY=SECRET_KEY, **extra)
    return env


def _cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*SERVICES_AI, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


class Processes:
    def __init__(self, folder: Path, env: dict[str, str], prefix: list[str]) -> None:
        self.folder, self.env, self.prefix = folder, env, prefix
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [*self.prefix, *SERVICES_AI, name, *args],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def shells(tmp_path: Path) -> Iterator[tuple[dict[str, str], Processes, Host]]:
    data = tmp_path / "data"
    env = _env(data, SERVICES_AI_WIDGET_TICK_SECONDS="1")
    # The same database the processes use by default: the SQLite file in the data folder.
    host = Host(make_config(data, f"sqlite:///{data / 'services_ai.db'}"))
    host.db.upgrade()
    host.registry.install(SAMPLE_PLUGIN)
    for permission in ("lead_access", "dashboard_widget"):
        host.registry.grant("lead-insights", permission)
    host.registry.enable("lead-insights")
    # Where the machine allows it (root, or unprivileged user namespaces), the processes get a
    # network namespace of their own: nothing but loopback, and that down. No server can help.
    probe = (
        subprocess.run([UNSHARE, "--net", "--map-root-user", "true"], capture_output=True, check=False)
        if UNSHARE
        else None
    )
    prefix = [UNSHARE, "--net", "--map-root-user"] if probe is not None and probe.returncode == 0 else []
    procs = Processes(tmp_path, env, prefix)
    yield env, procs, host
    procs.stop()
    host.close()


def _wait(predicate: object, what: str, procs: Processes, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}\n{procs.log(n)[-3000:]}" for n in procs.procs)
            pytest.fail(f"gave up waiting for {what}\n{logs}")
        time.sleep(0.2)


def test_worker_beat_and_publish_in_three_processes_with_no_server(
    shells: tuple[dict[str, str], Processes, Host],
) -> None:
    env, procs, host = shells
    assert procs.prefix, (
        "this machine allows network namespaces (root): the test must prove no server is used"
    )
    procs.start("worker", "-c", "2", "-l", "INFO", "--without-mingle", "--without-gossip")
    procs.start("beat", "-l", "INFO", "-s", str(Path(env["SERVICES_AI_DATA_DIR"]) / "beat-schedule"))
    published = subprocess.run(
        [
            *procs.prefix,
            *SERVICES_AI,
            "publish",
            "lead-created",
            "--data",
            '{"id": "L-1", "email": "ada@acme.io"}',
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert published.returncode == 0, published.stderr
    event_id = published.stdout.strip()

    _wait(lambda: host.events.counts()["done"] == 1, f"event {event_id} to be processed", procs)
    (result,) = host.events.show(event_id)["results"]
    assert (result["plugin_id"], result["status"]) == ("lead-insights", "success")
    _wait(host.widgets.snapshots, "beat to have the widget rendered", procs)
    status = json.loads(_cli(env, "status", "--json").stdout)
    assert status["broker"]["transport"] == "embedded"
    assert status["broker"]["url"] == f"sqlite:///{env['SERVICES_AI_DATA_DIR']}/broker.db"
    assert status["events"]["done"] == 1
    assert "127.0.0.1:6379" not in procs.log("worker")
    # The queued events and the database are the host's user's alone (sandboxes run as others).
    data = Path(env["SERVICES_AI_DATA_DIR"])
    for name in ("broker.db", "broker.db-wal", "services_ai.db", "services_ai.db-wal"):
        if (data / name).exists() or not name.endswith("-wal"):
            assert (data / name).stat().st_mode & 0o777 == 0o600, name


def test_a_killed_worker_loses_nothing(shells: tuple[dict[str, str], Processes, Host]) -> None:
    env, procs, host = shells
    publish = (
        "from services_ai_plugins.publisher import publish\n"
        "for i in range(300): print(publish({'type': 'lead.created', 'data': {'id': f'L{i}'}}))"
    )
    ids = subprocess.run(
        [sys.executable, "-c", publish], env=env, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(ids) == 300
    for _ in range(3):
        procs.start("worker", "-c", "2", "--without-mingle", "--without-gossip")
        time.sleep(3.0)  # mid-drain (start-up takes about 2 s here)
        procs.kill("worker")
    procs.start("worker", "-c", "2", "--without-mingle", "--without-gossip")

    _wait(
        lambda: host.events.counts()["done"] == len(ids),
        f"all {len(ids)} events to be done after 3 kills",
        procs,
    )
    for event_id in ids:
        assert [r["status"] for r in host.events.show(event_id)["results"]] == ["success"]  # once each


def test_memory_broker_from_a_separate_process_is_refused(tmp_path: Path) -> None:
    env = _env(tmp_path / "data", BROKER_URL="memory://")
    for args in (("publish", "lead-created", "--data", '{"id": "L1"}'), ("worker",), ("beat",)):
        done = _cli(env, *args, check=False)
        assert done.returncode == 78, (args, done.stderr)
        assert done.stderr.startswith("error: BROKER_URL=memory:// is a broker inside one process"), (
            done.stderr
        )
        assert done.stdout == ""
