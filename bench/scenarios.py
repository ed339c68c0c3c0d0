"""The measurements of one benchmark run. Each returns plain numbers for the report."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Any

from celery import Celery
from sqlalchemy import func, select, text

from bench.harness import (
    LIGHT_PLUGIN,
    REPO,
    SLEEPER_PLUGIN,
    WIDGET_PLUGIN,
    Bench,
    CpuMeter,
    drain_rate,
    paced,
    percentile,
    stop_all,
    summary,
)
from services_ai_plugins.calling.caller import HookCaller
from services_ai_plugins.host import Host
from services_ai_plugins.infra.models import EventRecord
from services_ai_plugins.lifecycle import packaging
from services_ai_plugins.publisher import Publisher

LEAD = {
    "id": "L",
    "name": "Ada Lovelace",
    "email": "ada@acme.io",
    "phone": "+1 555 0100",
    "company": "Acme Plumbing",
    "source": "referral",
    "custom_fields": {"utm": "spring"},
}


def _lead(i: int) -> dict[str, Any]:
    return {"type": "lead.created", "source": "bench", "data": {**LEAD, "id": f"L{i}"}}


def _done(host: Host) -> int:
    with host.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(EventRecord)).scalar() or 0)


# -- baseline ------------------------------------------------------------------------------------


def baseline(bench: Bench, n: int, workers: int, pool: str) -> dict[str, float]:
    """Raw Celery: publish ``n`` no-op tasks, then drain them with the same worker settings."""
    bench.reset()
    r = bench.redis()
    counter = f"bench:noop:{time.monotonic_ns()}"
    env = bench.env(BENCH_COUNTER=counter)
    os.environ.update({"REDIS_URL": bench.redis_url, "BENCH_COUNTER": counter})
    from bench import baseline as base_app  # configured from the environment set above

    app: Celery = base_app.app
    start = time.perf_counter()
    for _ in range(n):
        app.send_task("bench.noop", queue="bench")
    publish_s = time.perf_counter() - start
    procs = bench.start_workers(workers, app="bench.baseline", queues="bench", pool=pool, env=env)
    try:
        meter = CpuMeter(procs)
        drained = drain_rate(lambda: int(r.get(counter) or 0), n, timeout=600)
        cpu = meter.cores()
    finally:
        stop_all(procs)
    return {"publish_per_s": n / publish_s, "drain_per_s": drained["per_s"], "cpu_cores": cpu}


# -- the product ---------------------------------------------------------------------------------


def install_plugins(bench: Bench, host: Host, count: int, sleeper: bool = False) -> list[str]:
    """The sample plugin plus light plugins, ``count`` in all (and a sleeper if asked)."""
    ids = [bench.install(host, REPO / "sample_plugin", ["lead_access"])]
    for i in range(count - 1):
        folder = bench.write_plugin(f"Bench Light {i}", LIGHT_PLUGIN, ["lead_created"], ["lead_access"])
        ids.append(bench.install(host, folder, ["lead_access"]))
    if sleeper:
        folder = bench.write_plugin("Bench Sleeper", SLEEPER_PLUGIN, ["lead_created"], ["lead_access"])
        ids.append(bench.install(host, folder, ["lead_access"]))
    return ids


def throughput(
    bench: Bench,
    n: int,
    plugins: int,
    workers: int,
    pool: str,
    sleeper: bool = False,
    isolation: str | None = None,
) -> dict[str, float]:
    """Pre-load ``n`` events, then drain them with real workers; every result committed.
    ``isolation`` overrides the bench's (``process`` or ``inline``) for this run."""
    if isolation is not None and isolation != bench.isolation:
        saved, bench.isolation = bench.isolation, isolation
        try:
            return throughput(bench, n, plugins, workers, pool, sleeper)
        finally:
            bench.isolation = saved
    host = bench.reset()
    install_plugins(bench, host, plugins, sleeper)
    publisher = Publisher(bench.config())
    start = time.perf_counter()
    for i in range(n):
        publisher.publish(_lead(i))
    publish_s = time.perf_counter() - start
    procs = bench.start_workers(workers, pool=pool)
    try:
        meter = CpuMeter(procs)
        drained = drain_rate(lambda: _done(host), n, timeout=900)
        cpu = meter.cores()
    finally:
        stop_all(procs)
    with host.db.engine.connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT status, count(*) FROM hook_results GROUP BY status")).tuples().all()
        )
    host.close()
    return {
        "publish_per_s": n / publish_s,
        "events_per_s": drained["per_s"],
        "plugin_calls_per_s": drained["per_s"] * plugins,
        "successful_calls": int(statuses.get("success", 0)),
        "timeouts": int(statuses.get("timeout", 0)),
        "skipped": int(statuses.get("skipped", 0)),
        "cpu_cores": cpu,
    }


def latency(
    bench: Bench,
    rate: float,
    seconds: float,
    plugins: int,
    workers: int,
    pool: str,
    sleeper: bool = False,
    warmup: float = 2.0,
) -> dict[str, float]:
    """Publish at a steady ``rate`` for ``seconds``; publish -> results committed, per event.

    ``warmup`` seconds at the same rate come first and are not counted (steady state, not
    start-up); the worst latency during the warm-up is reported as ``warmup_max_ms``.
    """
    host = bench.reset()
    install_plugins(bench, host, plugins, sleeper)
    procs = bench.start_workers(workers, pool=pool, warm=True)
    try:
        publisher = Publisher(bench.config())
        warm = paced(lambda i: publisher.publish({**_lead(i), "event_id": f"warm-{i}"}), rate, warmup)
        meter = CpuMeter(procs, publisher=True)
        sent = paced(lambda i: publisher.publish({**_lead(i), "event_id": f"lat-{i}"}), rate, seconds)
        drain_rate(lambda: _done(host), warm + sent, timeout=300)
        elapsed = time.monotonic() - meter.start
        used = meter.seconds()
        machine = meter.machine()
    finally:
        stop_all(procs)
    with host.db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT EXTRACT(EPOCH FROM completed_at - occurred_at) * 1000 FROM events"
                " WHERE event_id LIKE 'lat-%'"
            )
        ).all()
        warm_max = conn.execute(
            text(
                "SELECT MAX(EXTRACT(EPOCH FROM completed_at - occurred_at) * 1000) FROM events"
                " WHERE event_id LIKE 'warm-%'"
            )
        ).scalar()
    host.close()
    values = [float(r[0]) for r in rows]
    return {
        "rate_per_s": sent / seconds,
        "asked_per_s": rate,
        **{f"{k}_ms": v for k, v in summary(values).items() if k != "n"},
        "events": float(len(values)),
        "warmup_max_ms": float(warm_max or 0.0),
        # Where the machine's CPU went, per event published meanwhile, and how busy it was;
        # "other": every other process of the machine (a service this bench does not use, say).
        **{f"cpu_us_{group}": seconds / sent * 1e6 for group, seconds in used.items()},
        "cpu_us_other": max(0.0, machine - sum(used.values())) / sent * 1e6,
        "machine_busy": max(machine, sum(used.values())) / (elapsed * (os.cpu_count() or 1)),
    }


def dashboard(bench: Bench, plugins: int, seconds: float) -> dict[str, float]:
    """Snapshots of ``plugins`` widgets read in a loop; no plugin code may run."""
    host = bench.reset()
    for i in range(plugins):
        folder = bench.write_plugin(
            f"Bench Widget {i}", WIDGET_PLUGIN, ["dashboard_widget"], ["dashboard_widget"]
        )
        bench.install(host, folder, ["dashboard_widget"])
    runtime = host.runtime
    service = host.widgets
    for plugin_id in service.due():
        service.refresh(plugin_id)
    runtime.close()

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("plugin code ran on the dashboard read path")

    real, HookCaller.call_many = HookCaller.call_many, forbidden  # type: ignore[assignment,method-assign]
    try:
        timings = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            snaps = service.snapshots()
            timings.append((time.perf_counter() - t) * 1000)
        assert len(snaps) == plugins, len(snaps)
    finally:
        HookCaller.call_many = real  # type: ignore[method-assign]
    host.close()
    return {
        "widgets": float(plugins),
        "reads_per_s": len(timings) / seconds,
        "p50_ms": percentile(timings, 50),
        "p99_ms": percentile(timings, 99),
    }


def memory(bench: Bench, plugins: int) -> dict[str, float]:
    """Resident memory of a worker process once it has called ``plugins`` plugins, and of the
    sandbox processes it started for them (none inline)."""
    host = bench.reset()
    install_plugins(bench, host, plugins)
    host.close()
    # One event through the worker's processor: every plugin is called, so its code is loaded.
    code = (
        "import os, workers; from workers import state; from services_ai_plugins.pipeline.processor import Incoming;"
        "h = state.get(); h.processor.process([Incoming({'type': 'lead.created', 'data': {'id': 'm'}})]);"
        "rss = lambda pid: int(open(f'/proc/{pid}/status').read().split('VmRSS:')[1].split()[0]);"
        "kids = [int(p) for t in os.listdir('/proc/self/task') for p in open(f'/proc/self/task/{t}/children').read().split()];"
        "print(len(h.runtime.plugins), rss('self'), sum(rss(k) for k in kids), len(kids))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=bench.env(), cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded, rss, sandboxes_rss, sandboxes = out.stdout.split()
    assert int(loaded) == plugins, out.stdout
    return {
        "plugins": float(plugins),
        "rss_mb": int(rss) / 1024,
        "sandboxes": float(sandboxes),
        "sandboxes_rss_mb": int(sandboxes_rss) / 1024,
    }


def install_time(bench: Bench, repeats: int) -> dict[str, float]:
    """Validate + install the sample plugin ZIP (then uninstall), ``repeats`` times."""
    host = bench.reset()
    zip_path = bench.workdir / "sample.zip"
    zip_path.write_bytes(packaging.package_dir(REPO / "sample_plugin"))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        host.registry.install(zip_path)
        times.append((time.perf_counter() - t) * 1000)
        host.registry.uninstall("lead-insights")
    host.close()
    return {"median_ms": statistics.median(times), "zip_kb": zip_path.stat().st_size / 1024}
