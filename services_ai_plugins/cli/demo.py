"""``services-ai demo``: the whole pipeline on one machine, as in production, then a report.

On embedded defaults it needs nothing running: a fresh SQLite database and the embedded broker
(a SQLite file) in the data folder, and a real ``services-ai worker`` and ``services-ai beat``
started as processes of their own, exactly as ops would run them. With ``REDIS_URL`` (or
``BROKER_URL``) and ``DATABASE_URL`` set, the same steps drive those services instead.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography.fernet import Fernet
from rich.console import Console
from rich.table import Table

from services_ai_plugins.cli.demo_data import demo_events
from services_ai_plugins.config import get_config, reset_config
from services_ai_plugins.errors import NotFoundError, PluginNotFoundError, ServicesAIError
from services_ai_plugins.host import Host
from services_ai_plugins.infra.broker import EVENT_TASK, EVENTS_QUEUE, QUEUES, safe_url
from services_ai_plugins.lifecycle import packaging

__all__ = ["COMMANDS", "run"]

PLUGIN_ID = "lead-insights"
PERMISSIONS = ("lead_access", "booking_access", "dashboard_widget", "data_export")
WAIT = 90.0  # seconds: a cold worker start on a busy 2-core machine, then the events
T = TypeVar("T")


class DemoError(ServicesAIError):
    """A step of the demo did not finish (the message says which, and where the logs are)."""


def _sample_plugin() -> Path:
    """The sample plugin: in a checkout beside the package, else in the working folder (the
    Docker image copies it to /app/sample_plugin)."""
    for candidate in (Path(__file__).resolve().parents[2] / "sample_plugin", Path.cwd() / "sample_plugin"):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise DemoError("sample_plugin/ not found: run the demo from the repository root")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


class _Processes:
    """The worker and beat the demo starts, stopped whatever happens."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        command = [sys.executable, "-m", "services_ai_plugins.cli", name, *args]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))

    def log(self, name: str) -> str:
        try:
            return (self.folder / f"{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise DemoError(f"the {name} exited (code {proc.returncode}); see {self.folder / name}.log")

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _until(what: str, check: Callable[[], T | None], procs: _Processes, timeout: float = WAIT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        procs.check()
        if time.monotonic() > deadline:
            raise DemoError(f"gave up waiting {timeout:g}s for {what}; see the logs in {procs.folder}")
        time.sleep(0.05)


def _prepare(count: int) -> tuple[bool, bool]:
    """Point the environment at a fresh demo data folder where the defaults are embedded."""
    embedded_db = not os.environ.get("DATABASE_URL")
    embedded_broker = not (os.environ.get("BROKER_URL") or os.environ.get("REDIS_URL"))
    base = get_config().data_dir
    if embedded_db or embedded_broker:
        demo_dir = base / "demo"
        shutil.rmtree(demo_dir, ignore_errors=True)
        os.environ["SERVICES_AI_DATA_DIR"] = str(demo_dir)
    if not os.environ.get("SERVICES_AI_SECRET_KEY") and embedded_db:
        os.environ["SERVICES_AI_SECRET_KEY"] = Fernet.generate_key().decode()
    reset_config()
    return embedded_db, embedded_broker


def run(count: int = 40, console: Console | None = None) -> dict[str, Any]:
    """Run the demo and print its report; returns the figures (tests read them)."""
    out = console or Console()
    embedded_db, embedded_broker = _prepare(count)
    config = get_config()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    host = Host(config)
    out.rule("[bold]Services AI plugins - demo")
    where_db = f"SQLite {config.data_dir / 'services_ai.db'}" if embedded_db else repr(host.db)
    where_broker = (
        f"embedded, {config.data_dir / 'broker.db'}" if embedded_broker else safe_url(config.broker_url)
    )
    out.print(f"database: {where_db}\nbroker:   {where_broker}\n", highlight=False)
    figures: dict[str, Any] = {}

    t = time.perf_counter()
    before, after = host.db.upgrade()
    out.print(f"1. database      migrated {before or 'empty'} -> {after} in {_ms(time.perf_counter() - t)}")

    zip_path = config.data_dir / "lead-insights-1.0.0.zip"
    zip_path.write_bytes(packaging.package_dir(_sample_plugin()))
    t = time.perf_counter()
    try:
        host.registry.show(PLUGIN_ID)
        out.print("2. sample plugin already installed (kept as it is)")
    except PluginNotFoundError:
        host.registry.install(zip_path, actor="demo")
        figures["install_ms"] = (time.perf_counter() - t) * 1000
        out.print(
            f"2. sample plugin packaged sample_plugin -> {zip_path.name} ({zip_path.stat().st_size // 1024} KB), "
            f"validated and installed in {_ms(time.perf_counter() - t)}"
        )
    for permission in PERMISSIONS:
        host.registry.grant(PLUGIN_ID, permission, actor="demo")
    values: dict[str, Any] = {"min_score": "55", "greeting": "Lead scores (demo)"}
    if config.secret_keys():
        values["api_key"] = "demo-crm-key"
    host.registry.set_settings(PLUGIN_ID, values, actor="demo", from_text=True)
    host.registry.enable(PLUGIN_ID, actor="demo")
    secret = (
        "api_key (secret, encrypted at rest)"
        if "api_key" in values
        else "no secret (no SERVICES_AI_SECRET_KEY)"
    )
    out.print(f"3. configured    granted {', '.join(PERMISSIONS)}; set min_score=55, {secret}; enabled")

    procs = _Processes(config.data_dir)
    try:
        procs.start(
            "worker",
            "-c",
            "2",
            "-Q",
            ",".join(QUEUES),
            "-l",
            "INFO",  # the pool processes say when they are ready
            "--without-mingle",
            "--without-gossip",
        )
        procs.start("beat", "-l", "WARNING", "-s", str(config.data_dir / "celerybeat-schedule"))
        t = time.perf_counter()
        _until(
            "the worker to start",
            lambda: True if procs.log("worker").count("pool process") >= 2 else None,
            procs,
        )
        out.print(
            f"4. processes     started `services-ai worker` (ready in {_ms(time.perf_counter() - t)}) and "
            f"`services-ai beat`; logs in {config.data_dir}",
            highlight=False,
        )
        figures.update(_pipeline(host, count, procs, out))
    finally:
        procs.stop()
        host.close()
    return figures


def _pipeline(host: Host, count: int, procs: _Processes, out: Console) -> dict[str, Any]:
    events = host.events
    batch = demo_events(count, random.Random(7))  # noqa: S311 - made-up demo data, reproducible
    t = time.perf_counter()
    ids = [host.publisher.publish(e) for e in batch]
    publish_s = time.perf_counter() - t
    kinds = {
        k: sum(1 for e in batch if e["type"] == k)
        for k in ("lead.created", "booking.created", "booking.updated")
    }
    out.print(
        f"5. published     {len(ids)} events ({kinds['lead.created']} leads, {kinds['booking.created']} bookings, "
        f"{kinds['booking.updated']} booking updates) in {_ms(publish_s)} ({len(ids) / publish_s:,.0f}/s)"
    )
    # A message that is not a valid event, sent as a careless publisher might.
    host.publisher.app.send_task(
        EVENT_TASK, args=[{"type": "lead.created", "data": {"id": "L-bad", "email": 42}}], queue=EVENTS_QUEUE
    )
    shown: dict[str, Any] = {}

    def all_done() -> bool | None:
        for event_id in ids:
            if event_id not in shown:
                try:
                    view = events.show(event_id)
                except NotFoundError:
                    return None
                if view.get("status") != "done":
                    return None
                shown[event_id] = view
        return True if events.counts()["dead"] >= 1 else None

    _until(f"the worker to process {len(ids)} events", all_done, procs)
    drain_s = time.perf_counter() - t
    views = [shown[i] for i in ids]
    results = [r for v in views for r in v.get("results", [])]
    failures = sum(1 for r in results if r["status"] != "success")
    out.print(
        f"6. processed     {len(views)}/{len(ids)} events by the worker, {_ms(drain_s)} after the first publish: "
        f"{len(results)} plugin calls, {failures} failed"
    )
    table = Table(title="what the plugin returned (the first events of each type)", title_justify="left")
    for col in ("event", "type", "plugin", "status", "result"):
        table.add_column(col, overflow="fold")
    for kind in kinds:
        for v in [x for x in views if x.get("type") == kind][:4]:
            for r in v.get("results", []):
                message = r["result"].get("message") if isinstance(r["result"], dict) else None
                table.add_row(v["data"]["id"], kind, r["plugin_id"], r["status"], message or r["error"] or "")
    out.print(table)

    snap = _until(
        "beat to have the widget rendered", lambda: next(iter(host.widgets.snapshots()), None), procs
    )
    out.print(
        f"7. widget        rendered on beat's schedule by the worker: {snap['status']}: {snap['title']} "
        f"(refresh every {snap['refresh_interval']} s, {snap['duration_ms']:.1f} ms): {_text_of(snap['html'])}",
        highlight=False,
        markup=False,
    )
    export_id = host.exports.create("leads", filters={"min_score": 55}, actor="demo")
    host.tasks.run_export(export_id)

    def finished() -> Any:
        job = host.exports.get(export_id)
        return job if job["status"] in ("done", "failed") else None

    job = _until("the worker to run the export", finished, procs)
    csv_path = host.config.data_dir / "leads-export.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        host.exports.write(export_id, fh, "csv")
    out.print(
        f"8. export        queued, run by the worker: leads scoring 55+: {job['row_count']} row(s) -> {csv_path}"
    )
    dead = events.dead_letters(limit=1)
    out.print(
        f"9. dead letter   a malformed event was refused, not retried: {dead[0]['reason']}",
        highlight=False,
        markup=False,
    )
    latencies = sorted(
        (datetime.fromisoformat(v["completed_at"]) - datetime.fromisoformat(v["occurred_at"])).total_seconds()
        for v in views
        if v.get("completed_at")
    )
    timing = Table(title="timings", title_justify="left")
    timing.add_column("what")
    timing.add_column("value", justify="right")
    timing.add_row("publish rate", f"{len(ids) / publish_s:,.0f} events/s")
    timing.add_row("all events processed after", _ms(drain_s))
    if latencies:
        timing.add_row("publish -> results committed, p50", _ms(statistics.median(latencies)))
        timing.add_row("publish -> results committed, max", _ms(latencies[-1]))
    out.print(timing)
    out.print(
        f"Next: services-ai status, services-ai events list, services-ai widgets (with SERVICES_AI_DATA_DIR={host.config.data_dir}).",
        highlight=False,
    )
    return {
        "events": len(ids),
        "processed": len(views),
        "calls": len(results),
        "failed": failures,
        "publish_per_s": len(ids) / publish_s,
        "drain_s": drain_s,
        "widget_status": snap["status"],
        "export_rows": job["row_count"],
        "dead": len(dead),
        "latency_p50_ms": statistics.median(latencies) * 1000 if latencies else None,
    }


@click.command()
@click.option(
    "--events",
    "count",
    default=40,
    show_default=True,
    type=click.IntRange(3, 100_000),
    help="How many events to publish.",
)
def demo(count: int) -> None:
    """Run the whole pipeline once, with a real worker and beat, and report what happened (no
    Redis or PostgreSQL needed)."""
    # Its logs and the export it writes hold the demo's personal data: the host's user alone
    # reads them (a plugin's sandbox runs as another user).
    os.umask(0o077)
    run(count)


COMMANDS = (demo,)
