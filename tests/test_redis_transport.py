"""The Redis transport's atomic fetch (services_ai_plugins/infra/internals/redis_fetch.py) on the
machine's Redis: messages published by stock kombu, taken in batches by one script that records them
exactly as kombu's ``QoS.append`` would, put back by kombu's own ``restore_visible``, in
kombu's priority order, from several queues; the wait that does not consume; and kombu's own
path when the fetch is switched off.

The tests use a logical database of their own (``TEST_TRANSPORT_REDIS_URL``, default db 12),
flushed before and after each.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Producer, Queue
from kombu.transport import redis as kombu_redis
from kombu.utils.json import loads
from pydantic import ValidationError
from redis.connection import AbstractConnection

from services_ai_plugins.config import Config
from services_ai_plugins.infra.broker import REDIS_TRANSPORT, transport_options
from services_ai_plugins.infra.internals import redis as transport
from services_ai_plugins.infra.internals import redis_fetch

pytestmark = pytest.mark.redis

URL = os.environ.get("TEST_TRANSPORT_REDIS_URL", "redis://127.0.0.1:6379/12")
OURS = REDIS_TRANSPORT
SEP = "\x06\x16"
QUEUES = ("events", "widgets", "exports", "lifecycle")


@pytest.fixture
def r() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(URL, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"these tests need Redis at {URL}: {exc}", pytrace=False)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


class Wire(list[list[bytes]]):
    """Every command this process sent to Redis (pipelines included), as its arguments."""

    def names(self) -> list[str]:
        return [c[0].decode().upper() for c in self]

    def packets(self) -> int:
        return self._packets

    _packets = 0

    def record(self, data: bytes) -> None:
        self._packets += 1
        pos = 0
        while pos < len(data):  # RESP arrays of bulk strings
            end = data.index(b"\r\n", pos)
            count, pos = int(data[pos + 1 : end]), end + 2
            args = []
            for _ in range(count):
                end = data.index(b"\r\n", pos)
                size = int(data[pos + 1 : end])
                args.append(data[end + 2 : end + 2 + size])
                pos = end + 2 + size + 2
            self.append(args)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    out = Wire()
    real = AbstractConnection.send_packed_command

    def spy(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        chunks = [command] if isinstance(command, (str, bytes)) else command
        out.record(b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks))
        real(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", spy)
    return out


def ours(**options: Any) -> Connection:
    return Connection(URL, transport=OURS, transport_options=options)


def stock(**options: Any) -> Connection:
    return Connection(URL, transport_options=options)


def publish(queue: str, bodies: list[Any], priorities: list[int] | None = None, **options: Any) -> None:
    """Publish with stock kombu, as any Celery client does (LPUSH to kombu's keys)."""
    with stock(**options) as conn:
        producer = Producer(conn.default_channel)
        for i, body in enumerate(bodies):
            producer.publish(
                body,
                routing_key=queue,
                declare=[Queue(queue, routing_key=queue)],
                priority=None if priorities is None else priorities[i],
            )


class Consumers:
    """A consumer per queue on one connection's channel (so the queue a message went to is the
    one the transport delivered it to); ``drain`` returns (queue, body, message) of what the
    calls of ``drain_events`` delivered."""

    def __init__(self, conn: Connection, queues: tuple[str, ...] = ("events",), no_ack: bool = False) -> None:
        self.conn = conn
        self.channel = conn.default_channel
        self.got: list[tuple[str, Any, Any]] = []
        for name in queues:

            def on_message(body: Any, message: Any, name: str = name) -> None:
                self.got.append((name, body, message))

            Consumer(
                self.channel, [Queue(name, routing_key=name)], callbacks=[on_message], no_ack=no_ack
            ).consume()

    def drain(self, prefetch: int = 0, times: int = 1, timeout: float = 3.0) -> list[tuple[str, Any, Any]]:
        self.channel.basic_qos(prefetch_count=prefetch)
        start = len(self.got)
        for _ in range(times):
            try:
                self.conn.drain_events(timeout=timeout)
            except TimeoutError:
                break
        return self.got[start:]


def consume(conn: Connection, queues: tuple[str, ...] = ("events",), **kw: Any) -> list[tuple[str, Any, Any]]:
    no_ack = kw.pop("no_ack", False)
    return Consumers(conn, queues, no_ack=no_ack).drain(**kw)


def unacked(r: redis.Redis, prefix: str = "") -> tuple[dict[bytes, bytes], dict[bytes, float]]:
    return r.hgetall(f"{prefix}unacked"), dict(r.zrange(f"{prefix}unacked_index", 0, -1, withscores=True))


def forget_deliveries(conn: Connection) -> None:
    """As if the process were killed: nothing is restored at close (kombu would otherwise put
    back what it holds unacknowledged)."""
    conn.default_channel.qos.restore_at_shutdown = False


def step(priority: int) -> int:
    """kombu's priority step of a message priority (0 is served first)."""
    return max(s for s in (0, 3, 6, 9) if s <= priority)


# -- the fetch ----------------------------------------------------------------------------------


def test_a_batch_is_taken_and_recorded_in_one_script_call_exactly_as_kombu_records_it(
    r: redis.Redis, wire: Wire
) -> None:
    publish("events", [{"i": i, "text": "é/ü"} for i in range(30)])
    queued = r.lrange("events", 0, -1)
    with ours() as conn:
        forget_deliveries(conn)
        consumers = Consumers(conn)
        wire.clear()
        got = consumers.drain()
        sent = wire.names()
        ours_hash, ours_index = unacked(r)
    assert [body["i"] for _, body, _ in got] == list(range(30)), "one drain, every message, FIFO"
    assert sent.count("EVALSHA") == 1, f"one round trip for the batch: {sent}"
    assert not {"BRPOP", "RPOP", "MULTI", "HSET", "ZADD"} & set(sent), sent
    assert r.llen("events") == 0

    # kombu's own consumer, on the same queued messages (same delivery tags): its records.
    r.delete("unacked", "unacked_index")
    r.rpush("events", *queued)
    with stock() as conn:
        forget_deliveries(conn)
        assert len(consume(conn, times=30)) == 30
        kombu_hash, kombu_index = unacked(r)
    assert ours_hash == kombu_hash, "the unacked hash differs from what kombu writes"
    assert set(ours_index) == set(kombu_index)
    assert all(abs(ours_index[t] - kombu_index[t]) < 60 for t in kombu_index), "scores are client time()"
    message, exchange, routing_key = loads(next(iter(ours_hash.values())))
    assert (exchange, routing_key) == ("", "events") and message["properties"]["delivery_tag"]


def test_the_batch_is_at_most_the_free_prefetch_slots_and_the_fetch_limit(r: redis.Redis) -> None:
    publish("events", list(range(120)))
    with ours() as conn:
        forget_deliveries(conn)
        assert len(consume(conn, prefetch=7)) == 7
    assert r.llen("events") == 113
    assert r.hlen("unacked") == r.zcard("unacked_index") == 7
    with ours(fetch_limit=20) as conn:
        forget_deliveries(conn)
        assert len(consume(conn)) == 20
    assert r.llen("events") == 93


def test_whatever_the_moment_every_message_is_queued_or_recorded(r: redis.Redis) -> None:
    """After each fetch (some messages acknowledged): queued + unacked + acked = published."""
    publish("events", [{"i": i} for i in range(40)])
    tags = {loads(m)["properties"]["delivery_tag"] for m in r.lrange("events", 0, -1)}
    acked: set[str] = set()
    with ours() as conn:
        forget_deliveries(conn)
        consumers = Consumers(conn)
        qos = conn.default_channel.qos
        for _ in range(6):
            held = len(qos._delivered) - len(qos._dirty)
            for _, body, message in consumers.drain(prefetch=held + 9, timeout=0.5):
                if body["i"] % 2:
                    message.ack()
                    acked.add(message.delivery_tag)
            queued = {loads(m)["properties"]["delivery_tag"] for m in r.lrange("events", 0, -1)}
            recorded = {t.decode() for t in r.hkeys("unacked")}
            assert set(r.zrange("unacked_index", 0, -1)) == set(r.hkeys("unacked"))
            assert queued | recorded | acked == tags
            assert not (queued & recorded) and not (recorded & acked)
    assert len(acked) == 20


def test_kombus_restore_visible_puts_fetched_messages_back_after_the_visibility_timeout(
    r: redis.Redis,
) -> None:
    publish("events", [{"i": i} for i in range(25)])
    with ours(visibility_timeout=1) as conn:
        forget_deliveries(conn)  # the worker "dies" holding all 25
        assert len(consume(conn)) == 25
    assert r.llen("events") == 0 and r.hlen("unacked") == 25
    with stock(visibility_timeout=1) as conn:
        conn.default_channel.qos.restore_visible(num=100, interval=1)  # not yet: younger than the timeout
        assert r.llen("events") == 0
        time.sleep(1.2)
        conn.default_channel.qos.restore_visible(num=100, interval=1)
    assert r.hlen("unacked") == 0 and r.zcard("unacked_index") == 0
    assert r.llen("events") == 25
    with ours() as conn:
        got = consume(conn)
        for _, _, message in got:
            message.ack()
    assert sorted(body["i"] for _, body, _ in got) == list(range(25))
    assert all(message.delivery_info["redelivered"] for _, _, message in got)
    assert r.hlen("unacked") == 0 and r.zcard("unacked_index") == 0


def test_ack_reject_requeue_and_restore_at_shutdown_are_kombus(r: redis.Redis) -> None:
    publish("events", [{"i": i} for i in range(5)])
    with ours() as conn:
        (_, _, first), (_, _, second), (_, _, third), *_ = consume(conn)
        first.ack()
        third.reject()
        second.reject(requeue=True)  # back at the head of the line (kombu's leftmost restore)
        assert r.hlen("unacked") == r.zcard("unacked_index") == 2
        assert r.llen("events") == 1
    # The two still held went back at close (a warm shutdown), as kombu does.
    assert r.hlen("unacked") == 0 and r.zcard("unacked_index") == 0
    with ours() as conn:
        assert sorted(b["i"] for _, b, _ in consume(conn)) == [1, 3, 4]


def test_priorities_are_served_in_kombus_order_within_and_between_fetches(r: redis.Redis) -> None:
    priorities = [(i * 7) % 10 for i in range(40)]

    def order(connect: Callable[[], Connection], prefetch: int) -> list[int]:
        publish("events", [{"i": i} for i in range(40)], priorities)
        assert r.llen(f"events{SEP}9") > 0  # kombu's priority sub-queues are in use
        out: list[int] = []
        with connect() as conn:
            consumers = Consumers(conn)
            while len(out) < 40:
                for _, body, message in consumers.drain(prefetch=prefetch):
                    out.append(body["i"])
                    message.ack()
        return out

    expected = sorted(range(40), key=lambda i: (step(priorities[i]), i))
    assert order(stock, prefetch=1) == expected
    assert order(ours, prefetch=0) == expected  # one batch
    assert order(ours, prefetch=6) == expected  # several

    # A message of a higher priority published after a fetch is served before older ones.
    publish("events", [{"i": i} for i in range(6)], [9] * 6)
    with ours() as conn:
        consumers = Consumers(conn)
        first = consumers.drain(prefetch=2)
        assert [b["i"] for _, b, _ in first] == [0, 1]
        for _, _, m in first:
            m.ack()
        publish("events", [{"i": "urgent"}], [0])
        assert [b["i"] for _, b, _ in consumers.drain(prefetch=2)] == ["urgent", 2]


def test_several_queues_each_message_to_its_queue_priority_first_queues_in_turn(
    r: redis.Redis,
) -> None:
    for queue in QUEUES:
        publish(queue, [{"q": queue, "i": i} for i in range(4)])
    publish("events", [{"q": "events", "i": "low"}], [9])
    with ours() as conn:
        forget_deliveries(conn)
        got = consume(conn, QUEUES)
    assert len(got) == 17
    assert all(body["q"] == queue for queue, body, _ in got), "delivered to another queue's consumer"
    assert got[-1][1]["i"] == "low", "a lower priority came before a higher one"
    assert r.hlen("unacked") == 17

    # Fetches small enough to need several: the queues take turns (kombu's round robin).
    r.flushdb()
    for queue in QUEUES:
        publish(queue, [{"q": queue, "i": i} for i in range(4)])
    served = []
    with ours() as conn:
        consumers = Consumers(conn, QUEUES)
        for _ in range(8):
            got = consumers.drain(prefetch=2)
            served.append({queue for queue, _, _ in got})
            for _, _, message in got:
                message.ack()
    assert all(len(s) == 1 for s in served), served
    assert set().union(*served[:4]) == set(QUEUES), f"not in turn: {served}"


def test_global_keyprefix_is_applied_as_kombu_applies_it(r: redis.Redis) -> None:
    options = {"global_keyprefix": "tenant:", "visibility_timeout": 1}
    publish("events", [{"i": i} for i in range(5)], [0, 9, 0, 9, 0], **options)
    assert set(r.keys()) >= {b"tenant:events", f"tenant:events{SEP}9".encode()}
    with ours(**options) as conn:
        forget_deliveries(conn)
        got = consume(conn)
    assert [b["i"] for _, b, _ in got] == [0, 2, 4, 1, 3]
    assert r.hlen("tenant:unacked") == r.zcard("tenant:unacked_index") == 5
    assert not r.exists("unacked", "unacked_index", "events", f"events{SEP}9")
    time.sleep(1.2)
    with stock(**options) as conn:
        conn.default_channel.qos.restore_visible(num=100, interval=1)
    assert r.llen("tenant:events") + r.llen(f"tenant:events{SEP}9") == 5
    assert r.hlen("tenant:unacked") == 0
    with ours(**options) as conn:
        message = conn.default_channel.basic_get("events")
        assert r.hexists("tenant:unacked", message.delivery_tag)
        message.ack()
        assert not r.hexists("tenant:unacked", message.delivery_tag)


def test_no_ack_consumers_and_basic_get(r: redis.Redis) -> None:
    publish("events", [{"i": i} for i in range(4)])
    with ours() as conn:
        assert len(consume(conn, no_ack=True)) == 4
        assert r.hlen("unacked") == 0, "kombu never records for a no_ack consumer"
    publish("events", [{"i": i} for i in range(2)])
    with ours() as conn:
        channel = conn.default_channel
        message = channel.basic_get("events")
        assert message.payload == {"i": 0}
        assert r.hexists("unacked", message.delivery_tag)
        assert len(channel.qos._delivered) == 1
        message.ack()
        assert r.hlen("unacked") == 0
        assert channel.basic_get("events", no_ack=True).payload == {"i": 1}
        assert r.hlen("unacked") == 0
        assert channel.basic_get("events") is None


def test_a_message_that_is_not_kombus_is_taken_off_not_recorded_and_the_rest_delivered(
    r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    publish("events", [{"i": 0}])
    r.lpush("events", b"not json", json.dumps({"no": "properties"}))
    publish("events", [{"i": 1}])
    with ours() as conn:
        forget_deliveries(conn)
        got = consume(conn)
    assert [b["i"] for _, b, _ in got] == [0, 1]
    assert r.hlen("unacked") == 2 and r.llen("events") == 0
    assert caplog.text.count("Not a kombu message") == 2


# -- waiting ----------------------------------------------------------------------------------


def test_the_wait_blocks_without_consuming(r: redis.Redis) -> None:
    r.lpush("events", b"a", b"b", b"c")
    before = r.lrange("events", 0, -1)
    assert r.blmove("events", "events", 1, "RIGHT", "RIGHT") == b"a"
    assert r.lrange("events", 0, -1) == before


def _publish_later(queue: str, delay: float) -> threading.Thread:
    def later() -> None:
        time.sleep(delay)
        publish(queue, [{"at": time.time()}])

    thread = threading.Thread(target=later)
    thread.start()
    return thread


def test_an_idle_consumer_wakes_at_once_for_its_first_queue_and_polls_the_others(
    r: redis.Redis, wire: Wire
) -> None:
    with ours(fetch_poll_min=0.1) as conn:
        forget_deliveries(conn)
        conn.default_channel.brpop_timeout = 2
        consumers = Consumers(conn, QUEUES)
        assert consumers.drain(timeout=0.5) == []  # nothing: the channel waits

        def waits() -> list[list[bytes]]:
            return [c for c in wire if c[0] == b"BLMOVE"]

        assert all(c[1:5] == [b"events", b"events", b"RIGHT", b"RIGHT"] for c in waits()), waits()
        assert [float(c[5]) for c in waits()[:3]] == [0.1, 0.2, 0.4], "the looks at the others back off"
        deadline = time.monotonic() + 15
        while float(waits()[-1][5]) < 2:  # idle long enough for the wait to reach its longest
            assert time.monotonic() < deadline, waits()
            consumers.drain(timeout=0.5)

        # The first queue: woken by Redis, well before its 2 s wait would time out.
        thread = _publish_later("events", 0.2)
        got = consumers.drain(timeout=5)
        thread.join()
        assert got and got[0][0] == "events" and time.time() - got[0][1]["at"] < 0.5

        # Another queue: found by the next look at the others, within the longest wait.
        thread = _publish_later("exports", 0.2)
        got = consumers.drain(timeout=5)
        thread.join()
        assert got and got[0][0] == "exports" and time.time() - got[0][1]["at"] < 2.5


def test_after_a_trickle_it_pauses_then_takes_what_gathered_in_one_fetch(r: redis.Redis, wire: Wire) -> None:
    with ours(fetch_pause=0.3) as conn:
        forget_deliveries(conn)
        consumers = Consumers(conn)
        assert consumers.drain(timeout=0.3) == []  # idle: the channel waits on the queue
        # The first message after a quiet spell is taken at once, not held for a pause.
        thread = _publish_later("events", 0.1)
        got = consumers.drain(timeout=5)
        thread.join()
        assert len(got) == 1 and time.time() - got[0][1]["at"] < 0.25
        # That fetch took fewer than it could: the channel pauses on a key nobody writes, then
        # takes what gathered meanwhile in one fetch.
        publish("events", [{"i": 1}, {"i": 2}])
        got = consumers.drain(timeout=5)
        assert [body["i"] for _, body, _ in got] == [1, 2]
        pauses = [c for c in wire if c[0] == b"BLMOVE" and c[1] == f"events{SEP}pause".encode()]
        assert pauses and all(float(c[5]) == 0.3 for c in pauses), pauses
        # Nothing left: after one empty fetch it waits on the queue again.
        assert consumers.drain(timeout=1) == []
        last_wait = [c for c in wire if c[0] == b"BLMOVE"][-1]
        assert last_wait[1] == b"events", last_wait
    assert r.llen(f"events{SEP}pause") == 0


def test_switched_off_it_is_kombus_brpop(r: redis.Redis, wire: Wire) -> None:
    publish("events", [{"i": i} for i in range(3)])
    wire.clear()
    with ours(atomic_fetch=False) as conn:
        forget_deliveries(conn)
        assert len(consume(conn, times=3)) == 3
    sent = wire.names()
    assert sent.count("BRPOP") == sent.count("HSET") == sent.count("ZADD") == 3, sent
    assert not {"EVALSHA", "BLMOVE"} & set(sent)
    assert r.hlen("unacked") == 3


def test_the_script_is_loaded_again_when_redis_has_lost_it(r: redis.Redis) -> None:
    publish("events", [{"i": i} for i in range(4)])
    with ours() as conn:
        forget_deliveries(conn)
        consumers = Consumers(conn)
        assert len(consumers.drain(prefetch=2)) == 2
        r.script_flush()
        assert len(consumers.drain(prefetch=4)) == 2
        r.script_flush()
        assert conn.default_channel.basic_get("events") is None
    assert r.hlen("unacked") == 4 and r.llen("events") == 0


# -- bulk acknowledgement -----------------------------------------------------------------------


def test_ack_many_removes_a_batch_in_one_round_trip(r: redis.Redis, wire: Wire) -> None:
    publish("events", [{"i": i} for i in range(10)])
    with ours() as conn:
        messages = [m for _, _, m in consume(conn)]
        qos = conn.default_channel.qos
        wire.clear()
        packets = wire.packets()
        assert transport.ack_many(messages[:8])
        assert wire.packets() - packets == 1, "one round trip"
        assert wire.names() == ["MULTI"] + ["ZREM", "HDEL"] * 8 + ["EXEC"]
        assert all(m.acknowledged for m in messages[:8])
        assert r.hlen("unacked") == r.zcard("unacked_index") == 2
        assert len(qos._delivered) - len(qos._dirty) == 2, "prefetch slots freed"
        assert not transport.ack_many(messages[7:]), "one was acknowledged already"
        assert not messages[8].acknowledged


def test_publishing_is_kombus_own(r: redis.Redis, wire: Wire) -> None:
    with ours() as conn:
        Producer(conn.default_channel).publish(
            {"x": 1}, routing_key="events", declare=[Queue("events", routing_key="events")], priority=9
        )
    assert "LPUSH" in wire.names() and not {"EVALSHA", "BLMOVE"} & set(wire.names())
    assert r.llen(f"events{SEP}9") == 1
    assert loads(r.lindex(f"events{SEP}9", 0))["properties"]["priority"] == 9


def test_closing_while_waiting_takes_nothing_more(r: redis.Redis) -> None:
    with ours() as conn:
        consumers = Consumers(conn)
        assert consumers.drain(timeout=0.3) == []
        conn.transport.cycle.on_poll_start()  # as the event loop does: a wait is in flight now
        channel = conn.default_channel
        assert channel._in_poll and channel._pending[0] == "BLMOVE"
        publish("events", [{"i": 0}])  # it wakes the wait; the close must not fetch it
    assert r.hlen("unacked") == 0
    (queued,) = r.lrange("events", 0, -1)
    assert not loads(queued)["properties"]["delivery_info"].get("redelivered"), "fetched, then put back"


def test_before_redis_6_2_it_is_kombus_fetch(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    assert redis_fetch.server_has_blmove(r)
    for version, has in (("6.0.16", False), ("6.2.0", True), ("7.0.15", True), ("10.1", True), ("x", False)):
        assert (
            redis_fetch.server_has_blmove(SimpleNamespace(info=lambda _, v=version: {"redis_version": v}))
            is has
        )
    monkeypatch.setattr(redis_fetch, "server_has_blmove", lambda _: False)
    publish("events", [{"i": 0}])
    with ours() as conn:
        assert not conn.default_channel.atomic
        assert len(consume(conn)) == 1


def test_a_reply_read_on_a_socket_error_event_is_delivered_not_dropped(r: redis.Redis) -> None:
    publish("events", [{"i": i} for i in range(3)])
    with ours() as conn:
        consumers = Consumers(conn)
        conn.transport.cycle.on_poll_start()  # a fetch is in flight
        channel = conn.default_channel
        assert channel._pending.command == "EVALSHA"
        time.sleep(0.1)
        channel._poll_error("BRPOP")  # what the poller calls on an ERR event
        assert [b["i"] for _, b, _ in consumers.got] == [0, 1, 2]
        assert r.hlen("unacked") == 3 and channel._pending is None


# -- wiring -------------------------------------------------------------------------------------


def test_a_live_channel_is_wired_to_the_overrides(r: redis.Redis) -> None:
    with ours() as conn:
        channel = conn.default_channel
        assert isinstance(channel, transport.Channel) and channel.atomic
        assert channel.handlers["BRPOP"] == channel._brpop_read  # what on_readable calls
        assert isinstance(channel.qos, redis_fetch.QoS)
        assert hasattr(channel, "_queue_cycle") and hasattr(channel._queue_cycle, "rotate")
        assert channel.connection.cycle.__class__ is kombu_redis.MultiChannelPoller
        assert hasattr(channel.qos, "_delivered") and hasattr(channel.qos, "_dirty")
        assert isinstance(channel.connection_errors, tuple)


@pytest.mark.parametrize(("env", "atomic"), [(None, True), ("true", True), ("false", False), ("0", False)])
def test_the_setting_reaches_the_channel(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch, env: str | None, atomic: bool
) -> None:
    if env is None:
        monkeypatch.delenv("SERVICES_AI_REDIS_ATOMIC_FETCH", raising=False)
    else:
        monkeypatch.setenv("SERVICES_AI_REDIS_ATOMIC_FETCH", env)
    config = Config(REDIS_URL=URL)  # type: ignore[call-arg]
    assert config.redis_atomic_fetch is atomic
    options = transport_options(config)
    assert options["atomic_fetch"] is atomic
    with Connection(URL, transport=REDIS_TRANSPORT, transport_options=options) as conn:
        assert conn.default_channel.atomic is atomic


def test_the_pause_setting_reaches_the_channel(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICES_AI_REDIS_FETCH_PAUSE", "0.004")
    options = transport_options(Config(REDIS_URL=URL))  # type: ignore[call-arg]
    with Connection(URL, transport=REDIS_TRANSPORT, transport_options=options) as conn:
        assert conn.default_channel.fetch_pause == 0.004
    monkeypatch.setenv("SERVICES_AI_REDIS_FETCH_PAUSE", "2")
    with pytest.raises(ValidationError, match="redis_fetch_pause"):
        Config(REDIS_URL=URL)  # type: ignore[call-arg]
