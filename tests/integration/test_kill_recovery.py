"""A worker killed with SIGKILL in the middle of its batches, then a fresh one: nothing lost,
nothing stored twice, and no plugin called again for an event whose results were committed.

About the moment of the kill: kombu's own Redis fetch takes a message off the queue with BRPOP
and only then records it in its ``unacked`` hash (the record a later worker restores from); a
SIGKILL between the two loses that one message, before any code of this project sees it. The
project's transport takes and records in one step (services_ai_plugins/infra/internals/
redis_fetch.py; random kills at any instant: tests/faults/test_kill_loop.py). This test is
about the pipeline, whichever fetch runs, so it kills the worker at a moment the broker shows
every event either queued, recorded as unacknowledged or committed: it freezes the worker's main
process (SIGSTOP; its pool children keep working on their batches), checks, and SIGKILLs the
process group; otherwise it lets the worker run a few milliseconds more and checks again (with
the atomic fetch there is nothing to wait for).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from services_ai_plugins.infra.broker import EVENTS_QUEUE
from services_ai_plugins.infra.models import HookResult
from tests.integration import (
    COUNTER_PERMISSIONS,
    Deployment,
    MakePlugin,
    Worker,
    call_log,
    calls,
    lead,
    wait_for,
)

pytestmark = pytest.mark.integration

EVENTS = 2000
VISIBILITY_TIMEOUT = 4


def _committed(deployment: Deployment) -> dict[str, set[str]]:
    """event id -> the plugins with a committed result for it."""
    out: dict[str, set[str]] = {}
    with deployment.host.db.session() as s:
        for event_id, plugin_id in s.execute(select(HookResult.event_id, HookResult.plugin_id)):
            out.setdefault(event_id, set()).add(plugin_id)
    return out


def _unacked(client: redis.Redis) -> set[str]:
    """Event ids kombu recorded as delivered and not yet acknowledged (its ``unacked`` hash;
    the publisher uses the event id as the task id)."""
    return {json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")}


def _nothing_in_transit(deployment: Deployment, client: redis.Redis, ids: list[str]) -> bool:
    """Every event is queued, recorded as unacknowledged, or committed.

    Queued messages were never delivered, so they are neither unacknowledged nor committed:
    the events in neither of those must be exactly as many as the queue holds."""
    elsewhere = set(ids) - _unacked(client) - set(_committed(deployment))
    return len(elsewhere) == client.llen(EVENTS_QUEUE)


def _kill_with_nothing_in_transit(
    deployment: Deployment, worker: Worker, client: redis.Redis, ids: list[str]
) -> None:
    """SIGKILL the worker's process group at a moment no message is between Redis and it (see
    the module docstring). Its pool processes are mid-batch: only the main process is frozen."""
    for _ in range(500):
        worker.freeze()
        time.sleep(0.005)  # a BRPOP sent just before the freeze has reached Redis by now
        if _nothing_in_transit(deployment, client, ids):
            worker.kill()
            return
        worker.thaw()
        time.sleep(0.01)
    pytest.fail("the worker always had a message in transit from Redis")


def test_sigkill_mid_batch_then_restart_loses_nothing_and_repeats_no_committed_call(
    deployment: Deployment, make_plugin: MakePlugin, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """Proves: after SIGKILL of a worker's whole process group mid-run (some results
    committed, not all) and a fresh worker started, all 2,000 events end ``done`` with exactly
    one result row per plugin (none lost, none duplicated); a batch's rows were committed
    together (at the kill, an event had results from both plugins or from neither); and each
    event committed before the kill was called exactly once per plugin: the redelivered
    messages found their stored results. Only events without committed results at the kill
    may have been called twice (their batch died before committing)."""
    logs = {"slow-counter": call_log("slow-counter"), "fast-counter": call_log("fast-counter")}
    plugins = {
        deployment.install(
            make_plugin(pid, log.source(sleep), permissions=COUNTER_PERMISSIONS), grants=COUNTER_PERMISSIONS
        )
        for (pid, log), sleep in zip(logs.items(), (0.005, 0), strict=True)
    }
    assert plugins == set(logs)
    client = redis_client

    ids = deployment.publish_all(lead(i) for i in range(EVENTS))
    first = deployment.start_worker(
        "doomed", wait=False, SERVICES_AI_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT)
    )

    def some_committed() -> bool:
        with deployment.host.db.session() as s:
            return (s.scalar(select(func.count()).select_from(HookResult)) or 0) >= 400

    wait_for(some_committed, "the first worker to commit some results", interval=0.05, workers=[first])
    _kill_with_nothing_in_transit(deployment, first, client, ids)
    killed_at = time.monotonic()
    deployment.wait_disconnected(first)  # whatever it committed is visible now
    committed = _committed(deployment)
    # Called before the kill for events whose batch never committed.
    in_flight = {pid: set(calls(log)) - set(committed) for pid, log in logs.items()}

    assert 0 < len(committed) < EVENTS, f"the kill was not mid-run: {len(committed)} events committed"
    torn = {e: p for e, p in committed.items() if p != plugins}
    assert not torn, f"events with results from one plugin only (a batch half committed): {torn}"
    assert _nothing_in_transit(deployment, client, ids), "a message was lost at the kill"

    # Redis hands an unacknowledged message back once it is older than the visibility
    # timeout, when a worker sweeps for them: at its start (then only every ~100 s). So the
    # fresh worker starts after the timeout has passed.
    time.sleep(max(0.0, killed_at + VISIBILITY_TIMEOUT + 1 - time.monotonic()))
    deployment.start_worker("fresh", SERVICES_AI_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT))
    deployment.wait_done(ids)

    with deployment.host.db.session() as s:
        per_pair = s.execute(
            select(HookResult.event_id, HookResult.plugin_id, func.count()).group_by(
                HookResult.event_id, HookResult.plugin_id
            )
        ).all()
    assert {n for _, _, n in per_pair} == {1}, "duplicate result rows"
    assert {(e, p) for e, p, _ in per_pair} == {(e, p) for e in ids for p in plugins}, "results lost"

    for plugin_id, log in logs.items():
        counted = calls(log)
        assert set(counted) == set(ids), f"{plugin_id} was never called for some events"
        again = {e: n for e, n in counted.items() if e in committed and n != 1}
        assert not again, f"{plugin_id} called again for events committed before the kill: {again}"
        repeated = {e for e, n in counted.items() if n > 1}
        assert repeated <= in_flight[plugin_id], f"{plugin_id}: called twice though not in flight"
    print(
        f"committed before the kill: {len(committed)} events; in flight (called, not committed): "
        f"{len(in_flight['slow-counter'])}; called again after the restart: "
        f"{sum(1 for n in calls(logs['slow-counter']).values() if n > 1)}"
    )
