"""``python -m bench.dashboard``: the dashboard's read path over HTTP, on the real server.

``services-ai web`` (uvicorn, one process) serves a PostgreSQL database holding ``--widgets``
rendered widget snapshots; this process is the dashboard, on one keep-alive connection over
loopback, with a dashboard-scope token. Three endpoints of the same app, alternated in
``--rounds`` rounds so a noisy moment of the machine hits all three alike:

- ``GET /healthz``: the trivial endpoint (no database), the baseline;
- ``GET /api/v1/widgets`` with ``If-None-Match`` of the current ETag: the poll when nothing
  changed (one small aggregate query, 304, no body);
- ``GET /api/v1/widgets``: the full list (one query, every snapshot's HTML as JSON).

For each: requests/s back to back, as a ratio to ``/healthz`` in the same round; then latency at
``--rate`` requests/s (open loop: each request's time counts from when it was due, so a stall
shows in every request it delays). No plugin code runs on this path: the web app never loads it,
and the bench checks that no widget was re-rendered while it read.

The machine is shared and noisy: compare within a run, not across runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import WIDGET_PLUGIN, Bench, add_service_arguments, percentile

TARGETS = {"not_modified_vs_trivial": 0.5, "p99_ms": 10.0}
ENDPOINTS = ("trivial", "not_modified", "full")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dashboard:
    """One keep-alive HTTP connection to the web app, as a polling dashboard holds."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.auth = {"Authorization": f"Bearer {token}"}
        self.tag = ""

    def get(self, endpoint: str) -> int:
        if endpoint == "trivial":
            path, headers = "/healthz", {}
        elif endpoint == "not_modified":
            path, headers = "/api/v1/widgets", {**self.auth, "If-None-Match": self.tag}
        else:
            path, headers = "/api/v1/widgets", self.auth
        self.conn.request("GET", path, headers=headers)
        answer = self.conn.getresponse()
        body = answer.read()
        if endpoint == "full":
            self.tag = answer.getheader("ETag") or ""
            self.size = len(body)
        return answer.status

    def close(self) -> None:
        self.conn.close()


EXPECTED = {"trivial": 200, "not_modified": 304, "full": 200}


def back_to_back(client: Dashboard, endpoint: str, seconds: float) -> float:
    """Requests per second, one after another."""
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        status = client.get(endpoint)
        if status != EXPECTED[endpoint]:
            raise AssertionError(f"{endpoint}: HTTP {status}, not {EXPECTED[endpoint]}")
        n += 1
    return n / seconds


def at_rate(client: Dashboard, endpoint: str, rate: float, seconds: float) -> dict[str, float]:
    """Latency at ``rate`` requests/s, each timed from when it was due (open loop)."""
    interval, start = 1.0 / rate, time.perf_counter()
    timings: list[float] = []
    i = 0
    while (due := start + i * interval) < start + seconds:
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        status = client.get(endpoint)
        timings.append((time.perf_counter() - due) * 1000)
        if status != EXPECTED[endpoint]:
            raise AssertionError(f"{endpoint}: HTTP {status}, not {EXPECTED[endpoint]}")
        i += 1
    return {
        "p50_ms": percentile(timings, 50),
        "p99_ms": percentile(timings, 99),
        "max_ms": max(timings),
        "n": float(len(timings)),
    }


def prepare(bench: Bench, widgets: int) -> tuple[str, int]:
    """``widgets`` plugins installed, granted, enabled and rendered once; a dashboard token;
    the snapshots' total ``attempted_at`` (moves if anything re-renders)."""
    host = bench.reset()
    for i in range(widgets):
        folder = bench.write_plugin(
            f"Bench Widget {i}", WIDGET_PLUGIN, ["dashboard_widget"], ["dashboard_widget"]
        )
        bench.install(host, folder, ["dashboard_widget"])
    for plugin_id in host.widgets.due():
        host.widgets.refresh(plugin_id)
    shown = len(host.widgets.snapshots())
    if shown != widgets:
        raise AssertionError(f"{shown} widgets rendered, not {widgets}")
    _, token = host.accounts.create_token("dashboard", name="bench")
    tag = host.widgets.list_tag()
    host.close()
    return token, hash(tag)


def serve(bench: Bench, port: int) -> subprocess.Popen[bytes]:
    log = (bench.workdir / "web.log").open("wb")
    env = bench.env(SERVICES_AI_WEB_SESSION_KEY="b" * 48)
    web = [sys.executable, "-m", "services_ai_plugins.cli", "web", "--port", str(port)]
    proc = subprocess.Popen(web, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the web app did not start: {(bench.workdir / 'web.log').read_text()[-2000:]}")


def run(bench: Bench, widgets: int, rounds: int, seconds: float, rate: float) -> dict[str, Any]:
    token, before = prepare(bench, widgets)
    port = free_port()
    web = serve(bench, port)
    client = Dashboard(port, token)
    try:
        client.get("full")  # the ETag, and a warm connection, process and query plans
        for endpoint in ENDPOINTS:
            back_to_back(client, endpoint, 1.0)
        rounds_out = []
        for round_ in range(rounds):
            order = ENDPOINTS if round_ % 2 == 0 else tuple(reversed(ENDPOINTS))
            rates = {e: back_to_back(client, e, seconds) for e in order}
            rounds_out.append(rates)
        latency = {e: at_rate(client, e, rate, max(seconds * 2, 5.0)) for e in ENDPOINTS}
        full_bytes = client.size
    finally:
        client.close()
        os.killpg(web.pid, 15)
        web.wait(timeout=30)
    ratios = {e: statistics.median(r[e] / r["trivial"] for r in rounds_out) for e in ("not_modified", "full")}
    out = {
        "widgets": widgets,
        "full_body_bytes": full_bytes,
        "per_s": {e: statistics.median(r[e] for r in rounds_out) for e in ENDPOINTS},
        "ratio_to_trivial": ratios,
        "rounds": rounds_out,
        "latency_at_rate": {"rate": rate, **latency},
        "targets": TARGETS,
    }
    after = _tag(bench)
    if after != before:
        raise AssertionError("a widget was rendered while the dashboard read: plugin code ran")
    return out


def _tag(bench: Bench) -> int:
    from services_ai_plugins.host import Host

    host = Host(bench.config())
    try:
        return hash(host.widgets.list_tag())
    finally:
        host.close()


def table(result: dict[str, Any]) -> str:
    lat = result["latency_at_rate"]
    rows = [
        f"| endpoint | requests/s back to back | ratio to /healthz | p50 / p99 at {lat['rate']:.0f}/s (ms) |",
        "|---|---|---|---|",
    ]
    names = {
        "trivial": "`/healthz` (trivial, baseline)",
        "not_modified": f"`/api/v1/widgets`, 304 ({result['widgets']} widgets)",
        "full": f"`/api/v1/widgets`, 200 ({result['widgets']} widgets, {result['full_body_bytes']:,} bytes)",
    }
    for e in ENDPOINTS:
        ratio = "1.00x" if e == "trivial" else f"{result['ratio_to_trivial'][e]:.2f}x"
        rows.append(
            f"| {names[e]} | {result['per_s'][e]:,.0f} | {ratio} | "
            f"{lat[e]['p50_ms']:.2f} / {lat[e]['p99_ms']:.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n")[0])
    parser.add_argument("--widgets", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per endpoint per round")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s of the latency run")
    add_service_arguments(parser)
    parser.add_argument(
        "--database", default="sai_bench_dashboard", help="PostgreSQL database made and dropped"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    # Redis database 12: nothing here uses the broker, and the main bench's 13 is left alone.
    bench = Bench(args.postgres, args.redis, database=args.database, redis_db=12)
    try:
        result = run(bench, args.widgets, args.rounds, args.seconds, args.rate)
    finally:
        bench.drop()
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
