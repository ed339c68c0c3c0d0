"""``python -m bench.transport``: the Redis transport's atomic batch fetch against kombu's own
BRPOP fetch (``SERVICES_AI_REDIS_ATOMIC_FETCH=false``), alternated in the same run.

For each fetch, in ``--rounds`` alternated rounds:

- the transport alone: a kombu consumer in this process drains pre-loaded Celery-sized messages
  (prefetch 1, 8 and 200, acknowledged one by one; prefetch 200 acknowledged 50 at a time with
  ``ack_many``, as the batching consumer does): CPU of this process and of Redis per message;
- drain of pre-loaded raw Celery no-op tasks (the bench's baseline app) and of pre-loaded
  events through the pipeline (5 plugins, results committed): rate between 10% and 90% done,
  and CPU of the worker's main (consumer) process per message;
- publish -> task start of a task that records it (``bench.stamp``), at each ``--rates``, on
  the first queue the worker consumes (``bench``) and on its second (``bench2``);
- an idle worker: CPU of its main process and of Redis;
- the bench's own latency scenario (publish -> results committed, 5 plugins) at
  ``--pipeline-rate`` events/s.

Redis CPU is that of the ``redis-server`` listening on the bench's port.

The machine is shared and noisy: compare the two fetches within a run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from kombu import Connection, Consumer, Producer, Queue

from bench import scenarios
from bench.harness import Bench, Worker, _pids, add_service_arguments, drain_rate, paced, stop_all, summary
from bench.scenarios import _done, _lead, install_plugins
from services_ai_plugins.infra.broker import REDIS_TRANSPORT
from services_ai_plugins.infra.internals.redis import ack_many
from services_ai_plugins.publisher import Publisher

FETCHES = {"kombu": "false", "atomic": "true"}


def _env(bench: Bench, fetch: str, **extra: str) -> dict[str, str]:
    return bench.env(SERVICES_AI_REDIS_ATOMIC_FETCH=FETCHES[fetch], **extra)


@dataclass
class FetchBench(Bench):
    """The bench's harness, its workers on one fetch (for the bench's own scenarios)."""

    fetch: str = "atomic"

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(SERVICES_AI_REDIS_ATOMIC_FETCH=FETCHES[self.fetch], **extra)


def _on_cpu_seconds(pid: int) -> float:
    """CPU time of a process from ``/proc/PID/schedstat`` (nanoseconds, unlike clock ticks)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _redis_pids(url: str) -> list[int]:
    """The redis-server processes listening on the port of ``url``."""
    port = urlsplit(url).port or 6379
    return [p for p in _pids("redis-server") if f":{port}" in Path(f"/proc/{p}/cmdline").read_text()]


class MainCpu:
    """CPU seconds of the workers' main processes (and of Redis) since creation."""

    def __init__(self, workers: list[Worker], redis_url: str) -> None:
        self.pids = [w.proc.pid for w in workers]
        self.redis = _redis_pids(redis_url)
        self.client = redis.Redis.from_url(redis_url)
        self.start = time.monotonic()
        self.main0 = sum(_on_cpu_seconds(p) for p in self.pids)
        self.redis0 = sum(_on_cpu_seconds(p) for p in self.redis)
        self.commands0 = int(self.client.info("stats")["total_commands_processed"])

    def read(self) -> dict[str, float]:
        return {
            "seconds": time.monotonic() - self.start,
            "main_cpu_s": sum(_on_cpu_seconds(p) for p in self.pids) - self.main0,
            "redis_cpu_s": sum(_on_cpu_seconds(p) for p in self.redis) - self.redis0,
            "redis_commands": int(self.client.info("stats")["total_commands_processed"]) - self.commands0 - 1,
        }


def _base_app(bench: Bench, counter: str, latencies: str) -> Any:
    os.environ.update({"REDIS_URL": bench.redis_url, "BENCH_COUNTER": counter, "BENCH_LATENCIES": latencies})
    from bench import baseline  # configured from the environment set above

    return baseline.app


BODY = {
    "args": [
        {"type": "lead.created", "event_id": "e", "data": {"id": "L", "name": "Ada", "notes": "x" * 300}}
    ],
    "kwargs": {},
}


def consumer(bench: Bench, fetch: str, n: int, prefetch: int, bulk: int) -> dict[str, float]:
    """A kombu consumer in this process: fetch, deliver and acknowledge ``n`` messages."""
    url = f"{bench.redis_url}"
    bench.redis().flushdb()
    queue = Queue("events", routing_key="events")
    with Connection(url) as conn:
        producer = Producer(conn.default_channel)
        for i in range(n):
            producer.publish(
                BODY, routing_key="events", declare=[queue] if i == 0 else [], headers={"id": str(i)}
            )
    options = {"atomic_fetch": fetch == "atomic"}
    got: list[Any] = []
    held: list[Any] = []
    with Connection(url, transport=REDIS_TRANSPORT, transport_options=options) as conn:
        channel = conn.default_channel
        channel.basic_qos(prefetch_count=prefetch)

        def on_message(_: Any, message: Any) -> None:
            got.append(None)
            if bulk:
                held.append(message)
            else:
                message.ack()

        with Consumer(channel, [queue], callbacks=[on_message]):
            redis_pids = _redis_pids(url)
            wall, cpu = time.perf_counter(), time.process_time()
            redis0 = sum(_on_cpu_seconds(p) for p in redis_pids)
            while len(got) < n:
                conn.drain_events(timeout=10)
                if bulk and (len(held) >= bulk or not channel.qos.can_consume()):
                    ack_many(held)
                    held.clear()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            redis_s = sum(_on_cpu_seconds(p) for p in redis_pids) - redis0
    bench.redis().flushdb()
    return {"per_s": n / wall, "cpu_us_per_msg": cpu / n * 1e6, "redis_cpu_us_per_msg": redis_s / n * 1e6}


def noop_drain(bench: Bench, fetch: str, n: int, pool: str) -> dict[str, float]:
    bench.reset()
    r = bench.redis()
    counter = f"bench:noop:{time.monotonic_ns()}"
    app = _base_app(bench, counter, "unused")
    for _ in range(n):
        app.send_task("bench.noop", queue="bench")
    env = _env(bench, fetch, BENCH_COUNTER=counter)
    procs = bench.start_workers(1, app="bench.baseline", queues="bench", pool=pool, env=env)
    try:
        cpu = MainCpu(procs, bench.redis_url)
        drained = drain_rate(lambda: int(r.get(counter) or 0), n, timeout=600)
        used = cpu.read()
    finally:
        stop_all(procs)
    return {
        "per_s": drained["per_s"],
        "main_cpu_us_per_msg": used["main_cpu_s"] / n * 1e6,
        "redis_cpu_us_per_msg": used["redis_cpu_s"] / n * 1e6,
    }


def event_drain(bench: Bench, fetch: str, n: int, pool: str) -> dict[str, float]:
    host = bench.reset()
    install_plugins(bench, host, 5)
    publisher = Publisher(bench.config())
    for i in range(n):
        publisher.publish(_lead(i))
    procs = bench.start_workers(1, pool=pool, env=_env(bench, fetch))
    try:
        cpu = MainCpu(procs, bench.redis_url)
        drained = drain_rate(lambda: _done(host), n, timeout=900)
        used = cpu.read()
    finally:
        stop_all(procs)
    host.close()
    return {
        "per_s": drained["per_s"],
        "main_cpu_us_per_msg": used["main_cpu_s"] / n * 1e6,
        "redis_cpu_us_per_msg": used["redis_cpu_s"] / n * 1e6,
    }


def start_latency(
    bench: Bench, fetch: str, rates: list[float], seconds: float, pool: str, idle: float
) -> dict[str, Any]:
    """One worker on ``bench,bench2``: publish -> start at each rate on each queue; then idle."""
    bench.reset()
    r = bench.redis()
    latencies = f"bench:latency:{time.monotonic_ns()}"
    app = _base_app(bench, "unused", latencies)
    env = _env(bench, fetch, BENCH_LATENCIES=latencies)
    procs = bench.start_workers(1, app="bench.baseline", queues="bench,bench2", pool=pool, env=env)
    out: dict[str, Any] = {}
    try:
        time.sleep(2)  # past the start-up
        cpu = MainCpu(procs, bench.redis_url)
        time.sleep(idle)
        used = cpu.read()
        out["idle"] = {
            "main_cpu_pct": 100 * used["main_cpu_s"] / used["seconds"],
            "redis_cpu_pct": 100 * used["redis_cpu_s"] / used["seconds"],
            # commands run inside scripts count too (a fetch is one round trip, 1 + 4 x queues calls)
            "redis_commands_per_s": used["redis_commands"] / used["seconds"],
        }
        for rate in rates:
            for queue in ("bench", "bench2"):
                r.delete(latencies)
                sent = paced(
                    lambda _, q=queue: app.send_task("bench.stamp", args=[time.time()], queue=q),
                    rate,
                    seconds,
                )
                deadline = time.monotonic() + 60
                while r.llen(latencies) < sent and time.monotonic() < deadline:
                    time.sleep(0.05)
                values = [float(v) * 1000 for v in r.lrange(latencies, 0, -1)]
                stats = summary(values)
                out[f"{queue}@{rate:g}"] = {
                    "p50_ms": stats["p50"],
                    "p99_ms": stats["p99"],
                    "max_ms": max(values) if values else float("nan"),
                    "n": len(values),
                    "sent": sent,
                }
                time.sleep(2)  # back to idle between runs
    finally:
        stop_all(procs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__)
    parser.add_argument("--events", type=int, default=3000, help="messages per drain")
    parser.add_argument("--rates", default="20,500", help="publish rates of the latency runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each latency run")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of the idle reading")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo"])
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--only", default="consumer,noop,events,latency,pipeline", help="which measurements")
    parser.add_argument(
        "--pipeline-rate", type=float, default=700.0, help="events/s of the pipeline latency run"
    )
    add_service_arguments(parser)
    parser.add_argument(
        "--database",
        default="sai_bench_transport",
        help="PostgreSQL database made and dropped (not the bench's)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    rates = [float(x) for x in args.rates.split(",")]
    bench = Bench(args.postgres, args.redis, concurrency=args.concurrency, database=args.database)
    results: dict[str, list[dict[str, Any]]] = {fetch: [] for fetch in FETCHES}
    try:
        for round_ in range(args.rounds):
            order = list(FETCHES) if round_ % 2 == 0 else list(reversed(FETCHES))
            for fetch in order:
                entry: dict[str, Any] = {}
                if "consumer" in only:
                    for prefetch, bulk in ((1, 0), (8, 0), (200, 0), (200, 50)):
                        name = f"consumer_prefetch{prefetch}" + (f"_bulk{bulk}" if bulk else "")
                        entry[name] = consumer(bench, fetch, args.events, prefetch, bulk)
                if "noop" in only:
                    entry["noop_drain"] = noop_drain(bench, fetch, args.events, args.pool)
                if "events" in only:
                    entry["event_drain"] = event_drain(bench, fetch, args.events, args.pool)
                if "pipeline" in only:  # the bench's latency scenario: publish -> committed
                    fb = FetchBench(
                        args.postgres,
                        args.redis,
                        concurrency=args.concurrency,
                        database=args.database,
                        fetch=fetch,
                    )
                    entry["pipeline_latency"] = scenarios.latency(
                        fb, args.pipeline_rate, args.seconds, 5, 1, args.pool
                    )
                if "latency" in only:
                    entry["latency"] = start_latency(bench, fetch, rates, args.seconds, args.pool, args.idle)
                results[fetch].append(entry)
                print(f"round {round_ + 1} {fetch}: {json.dumps(entry)}", file=sys.stderr, flush=True)
    finally:
        bench.drop()
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
