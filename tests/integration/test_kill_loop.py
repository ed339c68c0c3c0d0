"""Many random SIGKILLs of real workers draining a backlog: with the atomic fetch nothing is
lost and every event's results are stored exactly once; kombu's own fetch, in the same run,
for comparison.

Each cycle starts a worker (prefork, 2 processes) on the queued events and SIGKILLs its whole
process group at a random instant of its first 0.3 s after it is ready: the consumer is then
filling its prefetch window as fast as it can, which is when kombu's fetch (BRPOP, then a second
round trip to record the message as unacknowledged) is most exposed: a kill between the two
loses the message; with the atomic fetch there is no such instant. The plugin takes 2 ms an
event, so the backlog outlasts the kills. After the kills, one last worker drains what is left,
including everything the dead workers held, which kombu's ``restore_visible`` puts back once it
is older than the (short) visibility timeout.

Sized for CI: ``TEST_KILL_LOOP_KILLS`` (default 40) kills on the atomic fetch, which must lose
nothing, and ``TEST_KILL_LOOP_COMPARE_KILLS`` (default 10) on kombu's fetch, which only reports
(its window is narrow: a short run often loses nothing); ``TEST_KILL_LOOP_EVENTS`` (default
3,000) events each. A long run, e.g. ``TEST_KILL_LOOP_KILLS=200 TEST_KILL_LOOP_COMPARE_KILLS=50
TEST_KILL_LOOP_EVENTS=6000``; each test's time limit grows with its kills.

Reported per fetch: kills, events, lost (never stored), and deliveries that died with a worker
(each is redelivered): the distinct (delivery tag, record time) pairs in ``unacked_index``
right after the kills.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from dataclasses import dataclass

import pytest
import redis
from sqlalchemy import func, select

from services_ai_plugins.infra.broker import EVENTS_QUEUE
from services_ai_plugins.infra.models import HookResult
from tests.integration import (
    COUNTER_PERMISSIONS,
    Deployment,
    MakePlugin,
    call_log,
    calls,
    lead,
    wait_for,
)

pytestmark = pytest.mark.integration

EVENTS = int(os.environ.get("TEST_KILL_LOOP_EVENTS", "3000"))
KILLS = int(os.environ.get("TEST_KILL_LOOP_KILLS", "40"))
COMPARE_KILLS = int(os.environ.get("TEST_KILL_LOOP_COMPARE_KILLS", "10"))
VISIBILITY_TIMEOUT = 3
KILL_WITHIN = 0.3  # seconds after the worker is ready
SETTLE_TIMEOUT = 240.0


def _time_limit(kills: int) -> float:
    """Seconds a run of ``kills`` may take: a cold start and a kill are ~2-4 s on CI's 2 cores;
    the publishing, the last worker's drain and the restores come on top."""
    return 120 + 8 * kills + SETTLE_TIMEOUT


@dataclass
class Outcome:
    fetch: str
    kills: int
    events: int
    lost: int
    died_with_a_worker: int
    called_twice: int
    seconds: float

    def line(self) -> str:
        return (
            f"{self.fetch} fetch: {self.kills} kills, {self.events} events, {self.lost} lost, "
            f"{self.died_with_a_worker} deliveries died with a worker (redelivered), "
            f"{self.called_twice} events called twice, {self.seconds:.0f} s"
        )


def _stored(deployment: Deployment) -> dict[str, int]:
    """event id -> result rows stored for it."""
    with deployment.host.db.session() as s:
        rows = s.execute(select(HookResult.event_id, func.count()).group_by(HookResult.event_id))
        return {event_id: int(n) for event_id, n in rows.all()}


def _kill_loop(
    deployment: Deployment,
    make_plugin: MakePlugin,
    client: redis.Redis,
    fetch: str,
    kills_wanted: int,
    seed: int,
) -> Outcome:
    started = time.monotonic()
    log = call_log(f"counter-{fetch}")
    plugin = deployment.install(
        make_plugin(f"counter-{fetch}", log.source(0.002), permissions=COUNTER_PERMISSIONS),
        grants=COUNTER_PERMISSIONS,
    )
    ids = deployment.publish_all(lead(i) for i in range(EVENTS))
    settings = {
        "SERVICES_AI_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "SERVICES_AI_REDIS_ATOMIC_FETCH": "true" if fetch == "atomic" else "false",
        # The kills are the test's, not the plugin's: never quarantine it for them.
        "SERVICES_AI_QUARANTINE_THRESHOLD": "1000",
    }
    rng = random.Random(seed)
    died: set[tuple[bytes, float]] = set()
    kills = 0
    for n in range(kills_wanted):
        if client.llen(EVENTS_QUEUE) == 0 and client.zcard("unacked_index") == 0:
            break  # drained already: a kill now would test nothing
        worker = deployment.start_worker(f"{fetch}-{n}", wait=False, **settings)
        wait_for(
            lambda w=worker: " ready." in w.log(), f"{worker.name} ready", interval=0.005, workers=[worker]
        )
        time.sleep(rng.uniform(0, KILL_WITHIN))
        worker.kill()
        kills += 1
        died |= set(client.zrange("unacked_index", 0, -1, withscores=True))

    last = deployment.start_worker(f"{fetch}-last", **settings)
    quiet_since: float | None = None

    def settled() -> bool:
        """Done, or nothing left anywhere for longer than a restore needs (then: lost)."""
        nonlocal quiet_since
        if len(_stored(deployment)) == len(ids):
            return True
        if client.llen(EVENTS_QUEUE) or client.zcard("unacked_index") or client.hlen("unacked"):
            quiet_since = None
            return False
        quiet_since = quiet_since or time.monotonic()
        return time.monotonic() - quiet_since > 2 * VISIBILITY_TIMEOUT + 2

    wait_for(
        settled,
        f"the {fetch} run to settle",
        timeout=SETTLE_TIMEOUT,
        interval=0.25,
        workers=[last],
        on_timeout=lambda: f"{len(_stored(deployment))} of {len(ids)} stored; {deployment.broker_state()}",
    )
    last.stop()
    stored = _stored(deployment)
    assert set(stored) <= set(ids)
    assert set(stored.values()) <= {1}, "an event has more than one result row for its one plugin"
    with deployment.host.db.session() as s:
        per_pair = s.execute(
            select(func.count()).select_from(HookResult).where(HookResult.plugin_id == plugin)
        ).scalar_one()
    assert per_pair == len(stored)
    counted = calls(log)
    return Outcome(
        fetch=fetch,
        kills=kills,
        events=len(ids),
        lost=len(ids) - len(stored),
        died_with_a_worker=len(died),
        called_twice=sum(1 for n in counted.values() if n > 1),
        seconds=time.monotonic() - started,
    )


@pytest.mark.timeout(_time_limit(KILLS))
def test_random_sigkills_lose_nothing_with_the_atomic_fetch(
    deployment: Deployment, make_plugin: MakePlugin, redis_client: redis.Redis
) -> None:
    """Proves: ``KILLS`` SIGKILLs at random instants of heavy fetching lose no event, and each
    event ends with exactly one stored result per plugin; messages held by the dead workers
    came back through kombu's ``restore_visible``."""
    outcome = _kill_loop(deployment, make_plugin, redis_client, "atomic", KILLS, seed=1)
    print(outcome.line())
    assert outcome.kills >= min(KILLS, 10), f"too few kills landed mid-drain: {outcome.line()}"
    assert outcome.died_with_a_worker > 0, "no kill left anything to restore: not mid-drain"
    assert outcome.lost == 0, outcome.line()
    assert redis_client.llen(EVENTS_QUEUE) == redis_client.hlen("unacked") == 0


@pytest.mark.timeout(_time_limit(COMPARE_KILLS))
def test_random_sigkills_with_kombus_fetch_for_comparison(
    deployment: Deployment, make_plugin: MakePlugin, redis_client: redis.Redis
) -> None:
    """The same kills with kombu's own fetch (``SERVICES_AI_REDIS_ATOMIC_FETCH=false``): what
    the atomic fetch closes. On this machine it lost 10 events in 50 kills, and 5 in 10 with
    sandboxed plugins; a short run that loses none is not a failure (the window is narrow), so
    this only checks that whatever it did store was stored once, and reports the loss."""
    outcome = _kill_loop(deployment, make_plugin, redis_client, "kombu", COMPARE_KILLS, seed=1)
    print(outcome.line())
    assert outcome.kills >= min(COMPARE_KILLS, 5), f"too few kills landed mid-drain: {outcome.line()}"
    if outcome.lost == 0:
        warnings.warn(f"kombu's fetch lost nothing this time: {outcome.line()}", stacklevel=1)
