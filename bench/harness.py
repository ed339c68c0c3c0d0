"""Processes and measurements the scenarios share: a clean database and broker, worker
subprocesses, paced publishing, and drain-rate and latency readings."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from services_ai_plugins import procstat
from services_ai_plugins.config import Config
from services_ai_plugins.host import Host
from services_ai_plugins.infra.db import Database, normalise_url

REPO = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")

LIGHT_PLUGIN = """
from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    return {"status": "success", "fields": len(lead), "plugin": context["plugin_id"]}
"""
SLEEPER_PLUGIN = """
import time
from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    time.sleep(30)  # far past any time limit, on every call
"""
WIDGET_PLUGIN = """
from services_ai_plugins import hookimpl

@hookimpl
def dashboard_widget(plugin_id, context):
    return {"title": plugin_id, "html": "<div class='card-body'><span class='fs-3'>42</span> leads</div>",
            "refresh_interval": 60}
"""


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Bench:
    """One benchmark run's services: its own PostgreSQL database and Redis logical database."""

    postgres_admin_url: str
    redis_base: str
    redis_db: int = 13
    database: str = "sai_bench"
    time_limit: float = 0.5
    batch_size: int = 50
    batch_interval: float = 0.005
    concurrency: int = 1  # pool processes per prefork worker
    isolation: str = "process"  # how workers run plugin code (SERVICES_AI_PLUGIN_ISOLATION)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sai-bench-")))
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())

    @property
    def redis_url(self) -> str:
        return f"{self.redis_base.rstrip('/')}/{self.redis_db}"

    @property
    def database_url(self) -> str:
        return normalise_url(self.postgres_admin_url).rsplit("/", 1)[0] + f"/{self.database}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICES_AI_")}
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            SERVICES_AI_SECRET_KEY=self.secret_key,
            SERVICES_AI_DATA_DIR=str(self.workdir / "data"),
            SERVICES_AI_PLUGIN_TIME_LIMIT=str(self.time_limit),
            SERVICES_AI_BATCH_SIZE=str(self.batch_size),
            SERVICES_AI_BATCH_INTERVAL=str(self.batch_interval),
            SERVICES_AI_REGISTRY_POLL_SECONDS="1",
            SERVICES_AI_PLUGIN_ISOLATION=self.isolation,
        )
        env.pop("BROKER_URL", None)
        env.update(extra)
        return env

    def config(self) -> Config:
        return Config(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            data_dir=self.workdir / "data",
            secret_key=self.secret_key,
            plugin_time_limit=self.time_limit,
            plugin_isolation=self.isolation,
        )  # type: ignore[call-arg]

    # -- state --------------------------------------------------------------------------------

    def reset(self) -> Host:
        """An empty, migrated database and an empty broker; a host on them."""
        admin = create_engine(normalise_url(self.postgres_admin_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        admin.dispose()
        Database(self.database_url).upgrade()
        self.redis().flushdb()
        return Host(self.config()).ready()

    def drop(self) -> None:
        admin = create_engine(normalise_url(self.postgres_admin_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        admin.dispose()
        self.redis().flushdb()

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def write_plugin(self, name: str, code: str, hooks: list[str], permissions: list[str]) -> Path:
        folder = self.workdir / "plugins" / name.lower().replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {
            "name": name,
            "version": "1.0.0",
            "description": "benchmark plugin",
            "author": "bench",
            "email": "bench@example.com",
            "hooks": hooks,
            "permissions": permissions,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest))
        (folder / "__init__.py").write_text("")
        (folder / "main.py").write_text(code)
        return folder

    def install(self, host: Host, folder: Path, permissions: list[str]) -> str:
        plugin_id = host.registry.install(folder).plugin.id
        for permission in permissions:
            host.registry.grant(plugin_id, permission)
        host.registry.enable(plugin_id)
        return plugin_id

    # -- workers ------------------------------------------------------------------------------

    def start_workers(
        self,
        count: int,
        app: str = "workers",
        queues: str = "events",
        pool: str = "solo",
        env: dict[str, str] | None = None,
        warm: bool = False,
    ) -> list[Worker]:
        workers = []
        for i in range(count):
            log = self.workdir / f"worker-{time.monotonic_ns()}-{i}.log"
            args = [
                CELERY,
                "-A",
                app,
                "worker",
                "-P",
                pool,
                "-Q",
                queues,
                "-l",
                "INFO",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "-n",
                f"bench{i}-{os.getpid()}@%h",
            ]
            if pool != "solo":
                args += ["-c", str(self.concurrency)]
            proc = subprocess.Popen(
                args,
                cwd=REPO,
                env=env or self.env(),
                stdout=subprocess.DEVNULL,
                stderr=log.open("w"),
                start_new_session=True,
            )
            workers.append(Worker(proc, log))
        # ``warm``: the product's pool processes warm up (load the plugins, start their
        # sandboxes) after the worker says "ready."; a latency run starts once they have, as
        # on a worker that has been up a while (the start-up cost is a worker's once:
        # warmup_max_ms shows it). A drain of a pre-filled queue starts at once: its rate is
        # taken between 10% and 90% done, and a small queue may be gone before the first poll.
        warmed = self.concurrency if warm and app == "workers" and pool == "prefork" else 0
        for w in workers:
            w.wait_ready(pool_processes=warmed)
        return workers


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, timeout: float = 60, pool_processes: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            warmed = len(re.findall(r"pool process \d+ ready:", text))
            if "ready." in text and warmed >= pool_processes:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"worker not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    def rss_kb(self) -> int:
        """Resident memory of the worker and its pool children."""
        total = 0
        for pid in [self.proc.pid, *self.children()]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return total

    def children(self) -> list[int]:
        try:
            out = subprocess.run(
                ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
            )
        except OSError:
            return []
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (0 for one that is gone)."""
    return procstat.cpu_seconds(pid) or 0.0


def _pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        found = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True, check=False)
        children = [int(p) for p in found.stdout.split()]
        out += children
        todo += children
    return out


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (every core, /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used over an interval, in cores (or seconds): the workers (main and pool processes),
    the sandboxes their pool processes started, PostgreSQL, Redis and, with ``publisher``, this
    process (which publishes in a latency run). A process that starts during the interval counts
    from zero (a sandbox started then, its start-up included); one that ends during it is missed.
    ``machine()`` is what every core of the machine spent, so that what else ran meanwhile (the
    machine is shared: other services, other tenants' steal) is seen beside them.
    """

    def __init__(self, workers: list[Worker], publisher: bool = False) -> None:
        self.workers = workers
        self.publisher = publisher
        self.start = time.monotonic()
        self.machine_before = machine_cpu_seconds()
        self.before = self._sample()

    def _groups(self) -> dict[str, list[int]]:
        pool = [p for w in self.workers for p in w.children()]
        groups = {
            "workers": [w.proc.pid for w in self.workers] + pool,
            "sandboxes": [d for p in pool for d in descendants(p)],
            "postgres": _pids("postgres"),
            "redis": _pids("redis-server"),
        }
        if self.publisher:
            groups["publisher"] = [os.getpid()]
        return groups

    def _sample(self) -> dict[str, dict[int, float]]:
        return {g: {p: cpu_seconds(p) for p in pids} for g, pids in self._groups().items()}

    def seconds(self) -> dict[str, float]:
        after = self._sample()
        return {
            g: sum(used - self.before[g].get(p, 0.0) for p, used in pids.items()) for g, pids in after.items()
        }

    def machine(self) -> float:
        """Seconds of CPU the whole machine spent since the meter started."""
        return machine_cpu_seconds() - self.machine_before

    def cores(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.start
        return {g: round(used / elapsed, 2) for g, used in self.seconds().items()}


def stop_all(workers: list[Worker]) -> None:
    for w in workers:
        if w.proc.poll() is None:
            os.killpg(w.proc.pid, signal.SIGTERM)
    for w in workers:
        w.stop()


# -- readings -----------------------------------------------------------------------------------


def drain_rate(count: Callable[[], int], total: int, timeout: float, poll: float = 0.05) -> dict[str, float]:
    """Wait until ``count()`` reaches ``total``; the rate between 10% and 90% done (start-up and
    tail excluded)."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = count()
        samples.append((time.monotonic(), n))
        if n >= total:
            break
        time.sleep(poll)
    else:
        raise RuntimeError(f"only {samples[-1][1]} of {total} done after {timeout:.0f}s")
    lo, hi = 0.1 * total, 0.9 * total
    i_lo = next(i for i, (_t, n) in enumerate(samples) if n >= lo)
    i_hi = next(i for i, (_t, n) in enumerate(samples) if n >= hi)
    if i_hi == i_lo:  # one commit crossed both marks between two polls (a small run): from the poll before
        i_lo = max(i_lo - 1, 0)
    (t_lo, n_lo), (t_hi, n_hi) = samples[i_lo], samples[i_hi]
    rate = (n_hi - n_lo) / (t_hi - t_lo) if t_hi > t_lo else float("nan")
    return {"per_s": rate, "seconds": samples[-1][0] - samples[0][0]}


def paced(send: Callable[[int], Any], rate: float, seconds: float) -> int:
    """Call ``send(i)`` ``rate`` times a second for ``seconds``; returns how many were sent."""
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while True:
        due = start + n * interval
        now = time.perf_counter()
        if now - start >= seconds:
            return n
        if due > now:
            time.sleep(due - now)
        send(n)
        n += 1


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
        "n": float(len(values)),
    }


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """``--postgres`` and ``--redis``: the services a bench runs on (the machine's, by default;
    ``BENCH_POSTGRES_URL`` and ``BENCH_REDIS_URL`` override them)."""
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"))
