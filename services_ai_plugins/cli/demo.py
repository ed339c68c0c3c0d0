"""``services-ai demo``: the whole pipeline on one machine, then a report of what happened.

On embedded defaults it needs nothing running: a fresh SQLite file in the data folder, Celery's
in-process memory broker and a worker thread in this process. With ``REDIS_URL`` (or
``BROKER_URL``) and ``DATABASE_URL`` set, the same steps drive those services instead.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from cryptography.fernet import Fernet
from rich.console import Console
from rich.table import Table

from services_ai_plugins.config import get_config, reset_config


def _sample_plugin() -> Path:
    """The sample plugin: beside the package in a checkout, else in the working folder (the
    Docker image copies it to /app/sample_plugin)."""
    for candidate in (Path(__file__).resolve().parent.parent / "sample_plugin", Path.cwd() / "sample_plugin"):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise FileNotFoundError("sample_plugin/ not found: run the demo from the repository root")


PLUGIN_ID = "lead-insights"
PERMISSIONS = ("lead_access", "booking_access", "dashboard_widget", "data_export")

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia", "Donald"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Torvalds"]
COMPANIES = [None, "Acme Plumbing", "Northwind Dental", "Brightside Cleaning", "Summit HVAC", None]
DOMAINS = ["gmail.com", "acmeplumbing.com", "northwind.dental", "outlook.com", "summit-hvac.io"]
SOURCES = ["website", "referral", "ads", "event", "walk-in"]
SERVICES = ["Consultation", "Boiler service", "Deep clean", "Check-up", "Installation"]


def _events(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Realistic leads, bookings and booking updates (about 60/25/15)."""
    now = datetime.now(UTC).replace(microsecond=0)
    out: list[dict[str, Any]] = []
    bookings: list[dict[str, Any]] = []
    for i in range(count):
        roll = i % 20
        if roll < 12 or (not bookings and roll >= 17):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            company = rng.choice(COMPANIES)
            domain = rng.choice(DOMAINS)
            lead = {
                "id": f"L-{1000 + i}",
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}@{domain}",
                "phone": f"+1 555 01{rng.randint(10, 99)}" if rng.random() < 0.7 else None,
                "company": company,
                "source": rng.choice(SOURCES),
                "status": "new",
                "created_at": (now - timedelta(minutes=count - i)).isoformat(),
                "custom_fields": {"utm_campaign": rng.choice(["spring", "retarget", "brand"])},
            }
            out.append({"type": "lead.created", "source": "demo", "data": lead})
        elif roll < 17:
            day = now + timedelta(days=rng.randint(1, 14))
            starts = day.replace(hour=rng.randint(8, 16), minute=rng.choice([0, 30]), second=0)
            booking = {
                "id": f"B-{2000 + i}",
                "lead_id": f"L-{1000 + rng.randint(0, max(i - 1, 0))}",
                "service": rng.choice(SERVICES),
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(minutes=rng.choice([30, 60, 90]))).isoformat(),
                "status": "pending",
                "location": rng.choice(["On site", "Clinic", "Video call"]),
                "price": float(rng.choice([49, 99, 149, 249])),
            }
            bookings.append(booking)
            out.append({"type": "booking.created", "source": "demo", "data": booking})
        else:
            before = bookings[rng.randrange(len(bookings))]
            after = {**before, "status": rng.choice(["confirmed", "cancelled", "completed"])}
            if after["status"] == "confirmed" and rng.random() < 0.5:
                moved = datetime.fromisoformat(before["starts_at"]) + timedelta(days=1)
                after["starts_at"] = moved.isoformat()
                after["ends_at"] = (moved + timedelta(minutes=60)).isoformat()
            out.append(
                {"type": "booking.updated", "source": "demo", "data": {**after, "previous_state": before}}
            )
    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def run(count: int = 40, console: Console | None = None) -> dict[str, Any]:
    """Run the demo and print its report; returns the figures (tests read them)."""
    out = console or Console()
    embedded_db = not os.environ.get("DATABASE_URL")
    embedded_broker = not (os.environ.get("BROKER_URL") or os.environ.get("REDIS_URL"))
    base = get_config().data_dir
    if embedded_db:
        demo_dir = base / "demo"
        shutil.rmtree(demo_dir, ignore_errors=True)
        os.environ["SERVICES_AI_DATA_DIR"] = str(demo_dir)
    if embedded_broker:
        os.environ["BROKER_URL"] = "memory://"
    fresh_key = not os.environ.get("SERVICES_AI_SECRET_KEY")
    if fresh_key and embedded_db:
        os.environ["SERVICES_AI_SECRET_KEY"] = Fernet.generate_key().decode()
    reset_config()
    config = get_config()

    from services_ai_plugins.host import Host
    from services_ai_plugins.infra.broker import safe_url
    from services_ai_plugins.infra.db import Database

    out.rule("[bold]Services AI plugins - demo")
    where_db = (
        "SQLite " + str(config.data_dir / "services_ai.db")
        if embedded_db
        else repr(Database(config.database_url))
    )
    where_broker = "in-process memory broker" if embedded_broker else safe_url(config.broker_url)
    out.print(f"database: {where_db}\nbroker:   {where_broker}\n", highlight=False)
    figures: dict[str, Any] = {}

    t = time.perf_counter()
    host = Host(config)
    before, after = host.db.upgrade()
    figures["db_ms"] = (time.perf_counter() - t) * 1000
    out.print(f"1. database      migrated {before or 'empty'} -> {after} in {_ms(time.perf_counter() - t)}")

    from services_ai_plugins.errors import PluginNotFoundError
    from services_ai_plugins.lifecycle import packaging

    zip_path = config.data_dir / "lead-insights-1.0.0.zip"
    config.data_dir.mkdir(parents=True, exist_ok=True)
    zip_path.write_bytes(packaging.package_dir(_sample_plugin()))
    t = time.perf_counter()
    try:
        host.registry.show(PLUGIN_ID)
        out.print("2. sample plugin already installed (kept as it is)")
    except PluginNotFoundError:
        host.registry.install(zip_path, actor="demo")
        figures["install_ms"] = (time.perf_counter() - t) * 1000
        out.print(
            f"2. sample plugin packaged sample_plugin -> {zip_path.name} "
            f"({zip_path.stat().st_size // 1024} KB), validated and installed in {_ms(time.perf_counter() - t)}"
        )
    for permission in PERMISSIONS:
        host.registry.grant(PLUGIN_ID, permission, actor="demo")
    values: dict[str, Any] = {"min_score": "55", "greeting": "Lead scores (demo)"}
    if config.secret_keys():
        values["api_key"] = "demo-crm-key"
    host.registry.set_settings(PLUGIN_ID, values, actor="demo", from_text=True)
    host.registry.enable(PLUGIN_ID, actor="demo")
    secret_note = (
        "api_key (secret, encrypted at rest)"
        if "api_key" in values
        else "no secret (no SERVICES_AI_SECRET_KEY)"
    )
    out.print(f"3. configured    granted {', '.join(PERMISSIONS)}; set min_score=55, {secret_note}; enabled")

    from celery.contrib.testing.worker import start_worker

    import workers

    rng = random.Random(7)  # noqa: S311 - made-up demo data, reproducible
    batch = _events(count, rng)
    events = host.events
    publisher = host.publisher
    with start_worker(
        workers.app,
        pool="solo",
        concurrency=1,
        perform_ping_check=False,
        shutdown_timeout=30,
        loglevel="ERROR",
        queues=["events", "widgets", "exports", "lifecycle"],
    ):
        out.print(
            f"4. worker        started in this process (batches of {config.batch_size} "
            f"or {config.batch_interval * 1000:g} ms)"
        )
        t = time.perf_counter()
        ids = [publisher.publish(e) for e in batch]
        publish_s = time.perf_counter() - t
        kinds = {
            k: sum(1 for e in batch if e["type"] == k)
            for k in ("lead.created", "booking.created", "booking.updated")
        }
        out.print(
            f"5. published     {len(ids)} events ({kinds['lead.created']} leads, {kinds['booking.created']} "
            f"bookings, {kinds['booking.updated']} booking updates) in {_ms(publish_s)} "
            f"({len(ids) / publish_s:,.0f}/s)"
        )
        bad_id = publisher.app.send_task(
            "services_ai.events.process",
            args=[{"type": "lead.created", "data": {"id": "L-bad", "email": 42}}],
            queue="events",
        ).id
        deadline = time.monotonic() + 60
        shown: dict[str, Any] = {}
        while time.monotonic() < deadline:
            done = [events.show(i) for i in ids if _stored(events, i, shown)]
            if len(done) == len(ids) and events.counts()["dead"] >= 1:
                break
            time.sleep(0.05)
        drain_s = time.perf_counter() - t
    del bad_id
    views = [shown[i] for i in ids if i in shown]
    results = [r for v in views for r in v["results"]]
    failures = sum(1 for r in results if r["status"] != "success")
    out.print(
        f"6. processed     {len(views)}/{len(ids)} events in {_ms(drain_s)} after the first publish: "
        f"{len(results)} plugin calls, {failures} failed"
    )

    tbl = Table(title="what the plugin returned (the first events of each type)", title_justify="left")
    for col in ("event", "type", "plugin", "status", "result"):
        tbl.add_column(col, overflow="fold")
    sample = [
        v
        for kind in ("lead.created", "booking.created", "booking.updated")
        for v in [x for x in views if x["type"] == kind][:4]
    ]
    for v in sample:
        for r in v["results"]:
            message = (r["result"] or {}).get("message") if isinstance(r["result"], dict) else None
            tbl.add_row(v["data"]["id"], v["type"], r["plugin_id"], r["status"], message or r["error"] or "")
    out.print(tbl)

    snap = host.widgets.refresh(PLUGIN_ID, actor="demo")
    out.print(
        f"7. widget        {snap['status']}: {snap['title']} (refresh every {snap['refresh_interval']} s, "
        f"rendered in {snap['duration_ms']:.1f} ms): {_text_of(snap['html'])}",
        highlight=False,
        markup=False,
    )
    exports = host.exports
    export_id = exports.create("leads", filters={"min_score": 55}, actor="demo")
    job = exports.run(export_id)
    csv_path = config.data_dir / "leads-export.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        exports.write(export_id, fh, "csv")
    out.print(f"8. export        leads scoring 55+: {job['row_count']} row(s) -> {csv_path}")
    dead = events.dead_letters(limit=1)
    if dead:
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
    figures.update(
        events=len(ids),
        processed=len(views),
        calls=len(results),
        failed=failures,
        publish_per_s=len(ids) / publish_s,
        drain_s=drain_s,
        widget_status=snap["status"],
        export_rows=job["row_count"],
        dead=len(dead),
        latency_p50_ms=statistics.median(latencies) * 1000 if latencies else None,
        latency_max_ms=latencies[-1] * 1000 if latencies else None,
    )
    timing = Table(title="timings", title_justify="left")
    timing.add_column("what")
    timing.add_column("value", justify="right")
    if "install_ms" in figures:
        timing.add_row("validate + install the sample ZIP", f"{figures['install_ms']:.0f} ms")
    timing.add_row("publish rate", f"{figures['publish_per_s']:,.0f} events/s")
    timing.add_row("all events processed after", f"{drain_s * 1000:.0f} ms")
    if latencies:
        timing.add_row("publish -> results committed, p50", f"{figures['latency_p50_ms']:.0f} ms")
        timing.add_row("publish -> results committed, max", f"{figures['latency_max_ms']:.0f} ms")
    out.print(timing)
    out.print(
        "Next: services-ai status, services-ai events list, services-ai widgets "
        f"(with SERVICES_AI_DATA_DIR={config.data_dir}).",
        highlight=False,
    )
    host.close()
    return figures


def _stored(events: Any, event_id: str, shown: dict[str, Any]) -> bool:
    if event_id in shown:
        return True
    from services_ai_plugins.errors import NotFoundError

    try:
        view = events.show(event_id)
    except NotFoundError:
        return False
    if view.get("status") != "done":
        return False
    shown[event_id] = view
    return True


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
    """Run the whole pipeline once and report what each plugin did (no Redis or PostgreSQL needed)."""
    run(count)


COMMANDS = (demo,)
