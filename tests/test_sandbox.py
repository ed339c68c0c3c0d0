"""The sandbox executor on its own: each plugin in a process of its own, reused across batches;
a call that overruns is stopped by the host on the wall clock; a sandbox that dies fails its
call with the reason and is replaced; a plugin that keeps killing it is quarantined; replies are
capped; settings reach it without a restart; what it logs is relayed, redacted. The attack
corpus (what a hostile plugin cannot do) is tests/test_isolation_attacks.py."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services_ai_plugins.calling.marker import RunningMarker
from services_ai_plugins.calling.sandbox.process import ProcessExecutor
from services_ai_plugins.host import Host
from services_ai_plugins.pipeline.processor import Incoming
from tests.helpers import make_config, manifest_for, write_plugin

BEHAVES = """
import os
from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    context["logger"].info("scored %s with key %s", lead["id"], context["settings"]["token"])
    return {"status": "success", "pid": os.getpid(), "uid": os.getuid(), "token": len(context["settings"]["token"])}
"""

MISBEHAVES = """
import os
from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    mode = lead["source"]
    if mode == "exit":
        os._exit(3)
    if mode == "hang-in-c":
        sum(range(10**11))
    if mode == "huge":
        return {"blob": "x" * 300_000}
    return {"status": "success", "pid": os.getpid()}
"""


@pytest.fixture
def host(tmp_path: Path, database_url: str) -> Iterator[Host]:
    h = Host(
        make_config(
            tmp_path / "data",
            database_url,
            plugin_isolation="process",
            plugin_time_limit=0.5,
            breaker_threshold=10,
            quarantine_threshold=3,
        )
    ).ready()
    yield h
    h.close()


def _add(host: Host, tmp_path: Path, name: str, main: str, **fields: object) -> str:
    folder = write_plugin(tmp_path / name, manifest_for(name, **fields), main)
    plugin_id = host.registry.install(folder).plugin.id
    host.registry.grant(plugin_id, "lead_access")
    host.registry.enable(plugin_id)
    return plugin_id


def _lead(i: int, mode: str = "") -> Incoming:
    return Incoming({"type": "lead.created", "event_id": f"e{i}", "data": {"id": f"L{i}", "source": mode}})


def _result(host: Host, event_id: str, plugin_id: str) -> dict:
    return next(r for r in host.events.show(event_id)["results"] if r["plugin_id"] == plugin_id)


def test_a_plugin_runs_in_a_long_lived_sandbox_of_its_own(
    host: Host, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = {"name": "token", "type": "password"}
    good = _add(host, tmp_path, "Good", BEHAVES, settings=[token])
    host.registry.set_settings(good, {"token": "s3cr3t-token"})
    with caplog.at_level(logging.INFO):
        host.processor.process([_lead(1), _lead(2)])
        host.processor.process([_lead(3)])
    results = [_result(host, f"e{i}", good)["result"] for i in (1, 2, 3)]
    assert len({r["pid"] for r in results}) == 1  # one sandbox, reused across batches
    assert results[0]["pid"] != os.getpid()
    if os.geteuid() == 0:
        assert results[0]["uid"] not in (0, os.getuid())  # a user of its own
    # What it logged reached the host's log, its secret redacted.
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("services_ai.plugin")]
    assert "scored L1 with key [redacted]" in lines
    assert all("s3cr3t-token" not in line for line in lines)
    # New settings reach the running sandbox (no restart).
    host.registry.set_settings(good, {"token": "longer-token-value"})
    host.processor.process([_lead(4)])
    after = _result(host, "e4", good)["result"]
    assert (after["token"], after["pid"]) == (len("longer-token-value"), results[0]["pid"])


def test_deaths_overruns_and_oversized_replies_fail_their_call_alone(host: Host, tmp_path: Path) -> None:
    bad = _add(host, tmp_path, "Bad", MISBEHAVES)
    good = _add(
        host,
        tmp_path,
        "Good",
        BEHAVES.replace('context["settings"]["token"]', '"-"').replace(
            'len(context["settings"]["token"])', "0"
        ),
    )
    started = time.monotonic()
    host.processor.process([_lead(1, "exit"), _lead(2, "hang-in-c"), _lead(3, "huge"), _lead(4)])
    took = time.monotonic() - started
    died = _result(host, "e1", bad)
    assert (died["status"], died["error"]) == ("crashed", "its sandbox died (exited with code 3)")
    hung = _result(host, "e2", bad)
    assert hung["status"] == "timeout"
    assert hung["error"] == "ran past its time limit of 0.5s (its sandbox was stopped)"
    assert took < 10  # blocked in C past its limit, stopped on the wall clock
    huge = _result(host, "e3", bad)
    assert (huge["status"], huge["error"]) == ("error", huge["error"])
    assert "the limit is 65536" in huge["error"]
    assert _result(host, "e4", bad)["status"] == "success"  # a fresh sandbox after each
    for i in range(1, 5):
        assert _result(host, f"e{i}", good)["status"] == "success"


def test_a_plugin_that_keeps_killing_its_sandbox_is_quarantined(host: Host, tmp_path: Path) -> None:
    bad = _add(host, tmp_path, "Bad", MISBEHAVES)
    for i in range(3):
        host.processor.process([_lead(i, "exit")])
    shown = host.registry.show(bad)
    assert not shown.enabled
    assert shown.disabled_reason is not None
    assert shown.disabled_reason.startswith(
        "quarantined: its sandbox died 3 times in a row (last: its sandbox died"
    )
    status = host.status.collect()["plugins"]
    assert status["disabled"][bad] == shown.disabled_reason
    assert status["problems"][bad]["crash"]["count"] == 3
    host.processor.process([_lead(9)])
    assert host.events.show("e9")["results"] == []  # not called any more
    # Fixed and enabled again by an administrator: the count starts afresh.
    host.registry.enable(bad)
    assert host.registry.show(bad).problems == {}


def _killed_while_running(folder: Path, plugin_id: str, ready: object) -> None:
    marker = RunningMarker(folder)
    marker.running(plugin_id)
    ready.set()  # type: ignore[attr-defined]
    time.sleep(60)


def test_a_process_killed_while_running_a_plugin_is_counted_against_it(host: Host, tmp_path: Path) -> None:
    bad = _add(host, tmp_path, "Bad", MISBEHAVES)
    ready = multiprocessing.get_context("fork").Event()
    child = multiprocessing.get_context("fork").Process(
        target=_killed_while_running, args=(host.config.data_dir / "running", bad, ready)
    )
    child.start()
    assert ready.wait(30)
    assert host.count_killed_processes() == []  # still running: not counted
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(30)
    assert host.count_killed_processes() == [bad]
    assert host.registry.show(bad).problems["crash"]["count"] == 1
    assert host.count_killed_processes() == []  # counted once


def test_a_sandbox_starts_under_a_strict_umask(host: Host, tmp_path: Path) -> None:
    """A host run under umask 077 (the demo's, and many deployments') still gives its sandboxes
    the standard library: the folders the sandbox's mount namespace makes are enterable."""
    plugin_id = _add(
        host,
        tmp_path,
        "Umask",
        "from services_ai_plugins import hookimpl\n\n"
        "@hookimpl\ndef lead_created(lead, context):\n"
        "    import fractions  # a standard-library module the sandbox has not loaded yet\n"
        "    return {'status': 'success', 'half': str(fractions.Fraction(1, 2))}\n",
    )
    old = os.umask(0o077)
    try:
        host.processor.process([_lead(1)])
    finally:
        os.umask(old)
    result = _result(host, "e1", plugin_id)
    assert (result["status"], result["result"]["half"]) == ("success", "1/2"), result


def _children() -> set[int]:
    return {
        int(pid)
        for task in os.listdir("/proc/self/task")
        for pid in open(f"/proc/self/task/{task}/children").read().split()
    }


def test_a_workers_warm_up_starts_the_sandboxes_its_first_calls_use(host: Host, tmp_path: Path) -> None:
    """``HookCaller.prepare`` (a pool process's warm-up) starts each enabled plugin's sandbox
    before any event: the first call is served by that process, not by a new one."""
    plugin_id = _add(host, tmp_path, "Ahead", BEHAVES, settings=[{"name": "token", "type": "password"}])
    host.registry.set_settings(plugin_id, {"token": "t0k3n-value"})
    host.runtime.refresh(force=True)
    before = _children()
    host.caller.prepare(host.runtime.plugins.values())
    started = _children() - before
    assert len(started) == 1, started
    host.processor.process([_lead(1)])
    assert _result(host, "e1", plugin_id)["result"]["pid"] in started


BURNS = """
import os, resource
from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    if lead["source"] == "burn":
        used = resource.getrusage(resource.RUSAGE_SELF)
        while used.ru_utime + used.ru_stime < 1.1:
            used = resource.getrusage(resource.RUSAGE_SELF)
    return {"status": "success", "pid": os.getpid()}
"""


def test_a_sandbox_near_its_cpu_limit_is_replaced_between_batches(tmp_path: Path, database_url: str) -> None:
    """Half its CPU-time limit used, a sandbox is replaced before its next batch (the limit
    would otherwise kill it in the middle of a call); one well under it is kept."""
    config = make_config(tmp_path / "data", database_url, plugin_isolation="process", plugin_time_limit=5)
    host = Host(config).ready()
    executor = host.executor
    assert isinstance(executor, ProcessExecutor)
    executor.limits = dataclasses.replace(executor.limits, cpu_seconds=2)  # the setting's floor is 10
    try:
        plugin_id = _add(host, tmp_path, "Burns", BURNS)
        host.processor.process([_lead(1)])
        host.processor.process([_lead(2)])
        host.processor.process([_lead(3, "burn")])  # past half of 2 s of CPU
        host.processor.process([_lead(4)])
        host.processor.process([_lead(5)])
        pids = [_result(host, f"e{i}", plugin_id)["result"]["pid"] for i in range(1, 6)]
    finally:
        host.close()
    assert pids[0] == pids[1] == pids[2]
    assert pids[3] != pids[2]
    assert pids[4] == pids[3]


FROZEN = """
import gc
from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    return {"status": "success", "frozen": gc.get_freeze_count()}
"""


def test_start_up_objects_are_kept_out_of_later_garbage_collections(host: Host, tmp_path: Path) -> None:
    """The sandbox freezes what its start-up made, as a worker's processes do after warm-up:
    a full collection would otherwise walk all of it while a batch waits."""
    plugin_id = _add(host, tmp_path, "Frozen", FROZEN)
    host.processor.process([_lead(1)])
    assert _result(host, "e1", plugin_id)["result"]["frozen"] > 10_000
    code = (
        "import gc, os; os.environ.setdefault('SERVICES_AI_DATA_DIR', os.getcwd());"
        " from workers import state; state.freeze_heap(); print(gc.get_freeze_count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        check=True,
    )
    assert int(out.stdout.split()[-1]) > 10_000
