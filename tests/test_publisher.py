"""The publisher: one call for platform services, validation first, a clear error when the
broker stays down, and no plugin machinery imported."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection

from services_ai_plugins.errors import BrokerUnavailableError, EventError
from services_ai_plugins.publisher import Publisher
from tests.helpers import REPO, make_config


@pytest.fixture
def memory_publisher(tmp_path) -> Publisher:
    publisher = Publisher(make_config(tmp_path, "sqlite://", BROKER_URL="memory://"))
    _drain(publisher)  # the in-process broker is shared by every test of this process
    return publisher


def _drain(publisher: Publisher) -> list[dict]:
    bodies = []
    with Connection(publisher.config.broker_url) as conn:
        queue = conn.SimpleQueue("events")
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                break
            bodies.append(message)
            message.ack()
        queue.close()
    return bodies


def test_publish_returns_the_event_id_and_queues_json(memory_publisher: Publisher) -> None:
    event_id = memory_publisher.publish({"type": "lead.created", "data": {"id": "L1"}})
    assert len(event_id) == 36
    (message,) = _drain(memory_publisher)
    assert message.content_type == "application/json"
    args, kwargs, _ = message.decode()
    assert args[0]["event_id"] == event_id
    assert args[0]["source"] == "unknown"
    assert args[0]["occurred_at"].endswith("+00:00") or args[0]["occurred_at"].endswith("Z")
    assert message.headers["task"] == "services_ai.events.process"
    assert message.headers["id"] == event_id


def test_given_ids_and_models_are_kept(memory_publisher: Publisher) -> None:
    from schemas import parse_event

    model = parse_event({"type": "lead.created", "event_id": "crm-42", "source": "crm", "data": {"id": "L"}})
    assert memory_publisher.publish(model) == "crm-42"
    assert (
        memory_publisher.publish(
            json.dumps({"type": "lead.created", "event_id": "crm-43", "data": {"id": "L"}})
        )
        == "crm-43"
    )


def test_invalid_events_are_refused_before_sending(memory_publisher: Publisher) -> None:
    with pytest.raises(EventError, match="data.email: input should be a valid string"):
        memory_publisher.publish({"type": "lead.created", "data": {"id": "L", "email": 5}})
    with pytest.raises(EventError, match="type: 'lead.updated' is not an event type"):
        memory_publisher.publish({"type": "lead.updated", "data": {}})
    assert _drain(memory_publisher) == []


def _lead(**data: object) -> dict:
    return {"type": "lead.created", "data": {"id": "L", **data}}


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ("dict", "bytes encoded; the limit is 262144"),
        ("model", "bytes encoded; the limit is 262144"),
        ("str", "characters; the limit is 262144"),
        ("bytes", "bytes; the limit is 262144"),
    ],
)
def test_an_event_over_the_size_cap_is_refused_in_every_form(
    memory_publisher: Publisher, form: str, message: str
) -> None:
    from schemas.events import LeadCreated

    big = _lead(custom_fields={f"k{i}": "x" * 1100 for i in range(300)})  # ~330 KB encoded
    given = {
        "dict": lambda: big,
        "model": lambda: LeadCreated.model_validate(big),  # built without parse_event's checks
        "str": lambda: json.dumps(big),
        "bytes": lambda: json.dumps(big).encode(),
    }[form]()
    with pytest.raises(EventError, match=message):
        memory_publisher.publish(given)
    assert _drain(memory_publisher) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"custom_fields": {f"k{i}": i for i in range(100_000)}}, "more than 1000 keys and list items"),
        ({"custom_fields": {"a": [[[[[[[[[[[1]]]]]]]]]]]}}, "nested more than 10 levels deep"),
        ({"name": "Ada\x00Lovelace"}, "NUL character"),
        ({"custom_fields": {"n": 2**70}}, "number JSON cannot carry"),
        ({"custom_fields": {"n": float("nan")}}, "NaN or an infinity"),
        ({"custom_fields": {"n": [1, float("inf")]}}, "NaN or an infinity"),
    ],
)
def test_nul_characters_and_numbers_json_cannot_carry_are_refused(
    memory_publisher: Publisher, data: dict, message: str
) -> None:
    """A clear validation error naming the problem, never a broker or database error later."""
    with pytest.raises(EventError, match=message):
        memory_publisher.publish(_lead(**data))
    assert _drain(memory_publisher) == []


def test_a_broker_that_stays_down_is_a_clear_error(tmp_path) -> None:
    publisher = Publisher(
        make_config(tmp_path, "sqlite://", REDIS_URL="redis://:hunter2@127.0.0.1:1/0"), max_retries=1
    )
    with pytest.raises(BrokerUnavailableError) as caught:
        publisher.publish({"type": "lead.created", "event_id": "e-down", "data": {"id": "L"}})
    message = str(caught.value)
    assert message.startswith(
        "the broker at redis://:**@127.0.0.1:1/0 did not accept event e-down after 2 tries"
    )
    assert "hunter2" not in message


def test_importing_the_publisher_loads_no_plugin_machinery() -> None:
    code = (
        "import sys; import services_ai_plugins.publisher as p; "
        "bad = [m for m in sys.modules if m.startswith(('services_ai_plugins.calling.loader', 'services_ai_plugins.lifecycle.registry',"
        " 'services_ai_plugins.calling.runtime', 'sqlalchemy', 'workers', '_sai_plugin_'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


REDIS = "redis://127.0.0.1:6379/12"


@pytest.fixture
def redis_publisher(tmp_path) -> Iterator[Publisher]:
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"this test needs Redis at {REDIS}: {exc}", pytrace=False)
    client.flushdb()
    publisher = Publisher(make_config(tmp_path, "sqlite://", REDIS_URL=REDIS))
    yield publisher
    publisher.close()
    client.flushdb()


def _queued() -> list[dict]:
    client = redis.Redis.from_url(REDIS)
    return [json.loads(raw) for raw in reversed(client.lrange("events", 0, -1))]


def _task(message: dict) -> tuple[dict, list]:
    """What a Celery worker reads of a queued kombu message: its headers and its arguments."""
    body = json.loads(base64.b64decode(message["body"]))
    return message["headers"], body


@pytest.mark.redis
def test_on_redis_the_message_is_the_one_send_task_makes(redis_publisher: Publisher) -> None:
    event = {
        "type": "lead.created",
        "event_id": "e-same",
        "occurred_at": "2026-01-01T00:00:00Z",
        "data": {"id": "L"},
    }
    redis_publisher._direct = False  # Celery's send_task
    redis_publisher.publish(event)
    redis_publisher._direct = True
    redis_publisher.publish(event)
    celery, ours = _queued()
    assert _task(ours) == _task(celery)
    assert ours["headers"]["argsrepr"] == "<lead.created e-same>"  # no personal data in headers
    for key in ("content-type", "content-encoding"):
        assert ours[key] == celery[key]
    for key in ("correlation_id", "delivery_mode", "priority", "body_encoding", "delivery_info"):
        assert ours["properties"][key] == celery["properties"][key], key
    assert ours["properties"]["delivery_tag"] != celery["properties"]["delivery_tag"]


@pytest.mark.redis
def test_threads_and_forked_children_each_publish_on_a_connection_of_their_own(
    redis_publisher: Publisher,
) -> None:
    def send(start: int) -> None:
        for i in range(start, start + 50):
            redis_publisher.publish({"type": "lead.created", "event_id": f"t-{i}", "data": {"id": "L"}})

    threads = [threading.Thread(target=send, args=(k * 50,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pid = os.fork()
    if pid == 0:  # the parent's connection must not be used here
        try:
            send(1000)
        finally:
            os._exit(0)
    send(2000)
    os.waitpid(pid, 0)
    ids = [_task(m)[0]["id"] for m in _queued()]
    assert len(ids) == len(set(ids)) == 500
    assert set(ids) == {f"t-{i}" for i in [*range(400), *range(1000, 1050), *range(2000, 2050)]}


@pytest.mark.redis
def test_a_thread_publishes_on_one_kept_socket_and_reconnects_after_it_breaks(
    redis_publisher: Publisher,
) -> None:
    def send(i: int) -> None:
        redis_publisher.publish({"type": "lead.created", "event_id": f"s-{i}", "data": {"id": "L"}})

    def connected() -> set[int]:
        """Client ids of the connections to this test's Redis database."""
        clients = redis.Redis.from_url(REDIS).client_list()
        return {int(c["id"]) for c in clients if int(c["db"]) == 12 and c["cmd"] != "client|list"}

    before = connected()
    send(0)
    mine = connected() - before
    client = redis_publisher._local.conn.default_channel._create_client()
    assert client.connection is not None, "the publisher's client takes a pooled connection per command"
    for i in range(1, 100):
        send(i)
    assert connected() - before == mine, "publishing opened more connections"
    killer = redis.Redis.from_url(REDIS)
    for client_id in mine:  # the server drops them (a restart, an idle timeout)
        killer.client_kill_filter(_id=client_id)
    for i in range(100, 110):
        send(i)
    assert {_task(m)[0]["id"] for m in _queued()} == {f"s-{i}" for i in range(110)}
