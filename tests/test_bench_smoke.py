"""A small run of the benchmark so it cannot rot: every measurement runs end to end on the
machine's Redis and PostgreSQL and reports sane numbers. The full run (scripts/bench) stays out
of the test suite; its figures are in docs/BENCHMARKS.md."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def run_bench(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` from the checkout; fails the test with its stderr's tail."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.timeout(660)  # past the run's own 600 s, so a stuck run fails with its output
def test_benchmark_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    run_bench("bench", "--smoke", "--json", str(out), "--markdown", str(md), timeout=600)
    result = json.loads(out.read_text())
    assert result["baseline_1"]["drain_per_s"] > 0
    product = result["product_1"]
    assert product["successful_calls"] == result["settings"]["events"]  # every result committed
    assert product["events_per_s"] > 0
    assert result["ratios"]["product_1_vs_baseline"] > 0
    assert result["latency"]["p99_ms"] >= result["latency"]["p50_ms"] > 0
    assert result["dashboard"]["widgets"] == 5
    assert result["memory_1"]["rss_mb"] > 10
    assert result["install"]["median_ms"] > 0
    table = md.read_text()
    assert table.startswith("| measurement | value | ratio | target |")
    assert "raw Celery no-op: drain, 1 worker" in table


def test_transport_benchmark_smoke_run(tmp_path: Path) -> None:
    """``python -m bench.transport``, the fetches compared, in a small run: the transport alone
    and raw Celery no-op tasks drained by a worker on each fetch."""
    out = tmp_path / "transport.json"
    run_bench(
        "bench.transport",
        "--only",
        "consumer,noop",
        "--rounds",
        "1",
        "--events",
        "300",
        "--database",
        f"sai_bench_transport_{uuid.uuid4().hex[:8]}",
        "--json",
        str(out),
        timeout=300,
    )
    result = json.loads(out.read_text())
    assert set(result) == {"kombu", "atomic"}
    for (entry,) in result.values():
        assert entry["consumer_prefetch200_bulk50"]["cpu_us_per_msg"] > 0
        assert entry["noop_drain"]["per_s"] > 0


def test_a_drain_done_in_one_commit_between_two_polls_still_has_a_rate() -> None:
    """A small run can cross both the 10% and the 90% mark in one commit: the rate is then
    taken from the poll before, not left undefined (it was NaN, and failed the smoke run)."""
    import math

    from bench.harness import drain_rate

    seen = iter([0, 0, 100])
    rate = drain_rate(lambda: next(seen), 100, timeout=5, poll=0.01)["per_s"]
    assert rate > 0 and not math.isnan(rate)


def test_dashboard_http_benchmark_smoke_run(tmp_path: Path) -> None:
    """``python -m bench.dashboard`` in a small run: the real web server answers the trivial
    endpoint, the 304 poll and the full list as the bench expects, and no widget re-renders."""
    out = tmp_path / "dashboard.json"
    done = run_bench(
        "bench.dashboard",
        "--widgets",
        "5",
        "--rounds",
        "2",
        "--seconds",
        "0.3",
        "--rate",
        "50",
        "--database",
        f"sai_bench_dashboard_{uuid.uuid4().hex[:8]}",
        "--json",
        str(out),
        timeout=240,
    )
    assert "| `/api/v1/widgets`, 304 (5 widgets) |" in done.stdout
    result = json.loads(out.read_text())
    assert result["widgets"] == 5 and len(result["rounds"]) == 2
    assert result["full_body_bytes"] > 500  # five snapshots' HTML
    for endpoint in ("trivial", "not_modified", "full"):
        assert result["per_s"][endpoint] > 0
        at_rate = result["latency_at_rate"][endpoint]
        assert at_rate["p99_ms"] >= at_rate["p50_ms"] > 0 and at_rate["n"] >= 50
    assert result["ratio_to_trivial"]["full"] > 0 and result["ratio_to_trivial"]["not_modified"] > 0
