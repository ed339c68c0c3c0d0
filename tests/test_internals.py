"""Every private name of kombu and celery-batches the project relies on is fenced in
``services_ai_plugins.infra.internals`` (the fence) and still exists with the shape used: an upgrade
that moves one fails here, by name, instead of misbehaving in production. The record format the
Redis fetch script writes is checked against kombu's own in ``tests/test_redis_transport.py``."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from celery_batches import Batches
from celery_batches import trace as batches_trace
from kombu.transport import redis as kombu_redis
from kombu.transport import sqlalchemy as kombu_sql
from kombu.transport.virtual import base as virtual
from kombu.utils.imports import symbol_by_name
from kombu.utils.scheduling import round_robin_cycle

from services_ai_plugins.infra import broker, internals
from services_ai_plugins.infra.internals import batches, embedded, redis, redis_fetch

#: Every module of the fence (a new one is checked without being named here).
MODULES: list[ModuleType] = [
    importlib.import_module(f"{internals.__name__}.{m.name}")
    for m in pkgutil.iter_modules(internals.__path__)
]
PRIVATE_NAMES = [pair for module in MODULES for pair in module.PRIVATE_NAMES]
FENCE = Path(embedded.__file__).resolve().parent
PACKAGE = FENCE.parents[1]
LIBRARIES = ("kombu", "celery_batches")

RedisChannel, RedisQoS, Poller = kombu_redis.Channel, kombu_redis.QoS, kombu_redis.MultiChannelPoller

#: (owner, name, the parameters after ``self``) of every relied-on name the fence overrides or
#: calls: a changed signature fails here, not in a worker.
SIGNATURES: list[tuple[Any, str, list[str]]] = [
    # the embedded broker (kombu's SQLAlchemy channel)
    (kombu_sql.Channel, "_get", ["queue"]),
    (kombu_sql.Channel, "_put", ["queue", "payload", "kwargs"]),
    (kombu_sql.Channel, "_restore", ["message"]),
    (kombu_sql.Channel, "_size", ["queue"]),
    (kombu_sql.Channel, "_engine_from_config", []),
    # the Redis channel: methods overridden or called
    (RedisChannel, "_create_client", ["asynchronous"]),
    (RedisChannel, "_get", ["queue"]),
    (RedisChannel, "_brpop_start", ["timeout"]),
    (RedisChannel, "_brpop_read", ["options"]),
    (RedisChannel, "_q_for_pri", ["queue", "pri"]),
    (RedisChannel, "_flush_brpop_reauth", []),
    (RedisChannel, "_poll_error", ["type", "options"]),
    (RedisChannel, "_maybe_update_queues_expire", ["client", "queue"]),
    (RedisChannel, "basic_consume", ["queue", "args", "kwargs"]),
    (RedisChannel, "basic_get", ["queue", "no_ack", "kwargs"]),
    (RedisChannel, "conn_or_acquire", ["client"]),
    # the Redis QoS (the delivery record and the bulk ack)
    (RedisQoS, "append", ["message", "delivery_tag"]),
    (RedisQoS, "pipe_or_acquire", ["pipe", "client"]),
    (RedisQoS, "_remove_from_indices", ["delivery_tag", "pipe"]),
    (RedisQoS, "restore_visible", ["start", "num", "interval"]),
    (RedisQoS, "restore_by_tag", ["tag", "client", "leftmost"]),
    (virtual.QoS, "append", ["message", "delivery_tag"]),
    (virtual.QoS, "ack", ["delivery_tag"]),
    (virtual.QoS, "can_consume_max_estimate", []),
    (virtual.Transport, "_deliver", ["message", "queue"]),
    # the event loop that calls the overrides
    (Poller, "_register_BRPOP", ["channel"]),
    (Poller, "on_readable", ["fileno"]),
    (Poller, "handle_event", ["fileno", "event"]),
    # kombu's key prefixing (the fetch leaves the first script key to it), the queue cycle
    (kombu_redis.GlobalKeyPrefixMixin, "_prefix_args", ["args"]),
    (round_robin_cycle, "consume", ["n"]),
    (round_robin_cycle, "rotate", ["last_used"]),
    # celery-batches, as EventBatches uses it
    (Batches, "Strategy", ["task", "app", "consumer"]),
    (Batches, "_do_flush", []),
    (Batches, "flush", ["requests"]),
    (batches_trace, "apply_batches_task", ["task", "args", "loglevel", "logfile"]),
]


def _id(owner: Any, name: str) -> str:
    return f"{owner.__name__}.{name}"


@pytest.mark.parametrize(("owner", "name"), PRIVATE_NAMES, ids=[_id(o, n) for o, n in PRIVATE_NAMES])
def test_each_private_name_still_exists(owner: object, name: str) -> None:
    # An attribute the library sets on its instances counts if its __init__ still sets it.
    init = getattr(owner, "__init__", None)
    set_in_init = inspect.isfunction(init) and f"self.{name}" in inspect.getsource(init)
    assert hasattr(owner, name) or set_in_init, (
        f"{owner!r} has no {name} any more: see services_ai_plugins/infra/internals/"
    )


def _parameters(function: Any) -> list[str]:
    return [p for p in inspect.signature(function).parameters if p != "self"]


@pytest.mark.parametrize(
    ("owner", "name", "parameters"), SIGNATURES, ids=[_id(o, n) for o, n, _ in SIGNATURES]
)
def test_what_the_fence_overrides_or_calls_keeps_its_signature(
    owner: Any, name: str, parameters: list[str]
) -> None:
    assert _parameters(getattr(owner, name)) == parameters, f"{_id(owner, name)} changed"


def test_every_signature_checked_is_of_a_listed_name() -> None:
    listed = {(id(o), n) for o, n in PRIVATE_NAMES}
    assert [_id(o, n) for o, n, _ in SIGNATURES if (id(o), n) not in listed] == []


def test_the_rest_of_what_the_redis_transport_relies_on() -> None:
    # The prefixing client prefixes exactly the first key of an EVALSHA (kombu's own scripts
    # rely on it too): the fetch prefixes the other keys itself.
    assert kombu_redis.GlobalKeyPrefixMixin.PREFIXED_COMPLEX_COMMANDS["EVALSHA"] == {
        "args_start": 2,
        "args_end": 3,
    }
    assert redis.Channel.sep == "\x06\x16"  # the priority sub-queue separator
    # The event loop starts a read with no arguments and reads through the handler table.
    assert "channel._brpop_start()" in inspect.getsource(Poller._register_BRPOP)
    assert "chan.handlers[type]()" in inspect.getsource(Poller.on_readable)
    assert "chan._poll_error(type)" in inspect.getsource(Poller.handle_event)
    # The bulk ack: the delivered/dirty bookkeeping of a QoS that VirtualQoS.ack feeds.
    qos = virtual.QoS(channel=SimpleNamespace(do_restore=False))
    qos.append("message", "tag")
    qos.ack("tag")
    assert qos._dirty == {"tag"} and list(qos._delivered) == ["tag"]
    # The fetch's own transport options are read the way kombu reads its own.
    assert {"atomic_fetch", "fetch_limit", "fetch_poll_min"} <= set(redis.Channel.from_transport_options)
    assert redis.Channel.QoS is redis_fetch.QoS


def test_the_rest_of_what_the_batching_consumer_relies_on() -> None:
    # celery-batches: the buffer and pool the batching consumer reads.
    consumer = Batches()
    assert hasattr(consumer, "_buffer") and hasattr(consumer._buffer, "qsize")
    assert hasattr(consumer, "_pool")


def test_the_transport_names_resolve_to_the_fenced_classes() -> None:
    assert symbol_by_name(broker.EMBEDDED_TRANSPORT) is embedded.Transport
    assert symbol_by_name(broker.REDIS_TRANSPORT) is redis.Transport


def test_every_fence_module_lists_what_it_relies_on() -> None:
    assert {m.__name__.rsplit(".", 1)[1] for m in MODULES} >= {"batches", "embedded", "redis", "redis_fetch"}
    for module in MODULES:
        assert isinstance(module.PRIVATE_NAMES, list), module.__name__
        assert "PRIVATE_NAMES" in module.__all__, module.__name__


def _private_uses(path: Path) -> list[str]:
    """``lib_object._name`` uses and overrides of ``_name`` methods in subclasses of a library's
    classes, outside the fence."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            imported.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(
                (a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] in LIBRARIES
            )
    found = []
    for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
        bases = {
            b.value.id
            if isinstance(b, ast.Attribute) and isinstance(b.value, ast.Name)
            else getattr(b, "id", "")
            for b in cls.bases
        }
        if not bases & imported:
            continue
        own = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        own |= {
            t.id
            for n in cls.body
            if isinstance(n, ast.Assign | ast.AnnAssign)
            for t in ([n.target] if isinstance(n, ast.AnnAssign) else n.targets)
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in own
            ):
                found.append(f"{cls.name}: self.{node.attr}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            found += [f"imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in imported
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_other_module_uses_their_private_names() -> None:
    offenders = {}
    for path in sorted([*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "workers").rglob("*.py")]):
        if FENCE in path.parents:
            continue
        uses = _private_uses(path)
        if uses:
            offenders[str(path.relative_to(PACKAGE.parent))] = uses
    assert offenders == {}


def test_the_consumer_and_the_processor_agree_on_requeue() -> None:
    from services_ai_plugins.pipeline import processor

    assert batches.REQUEUE == processor.REQUEUE


def test_the_check_finds_a_private_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from celery_batches import Batches\nfrom kombu.transport import redis\n\n"
        "class Mine(Batches):\n    def flush(self):\n        return self._buffer, self.mine\n\n"
        "def f(qos):\n    return redis._private_thing\n",
        encoding="utf-8",
    )
    assert _private_uses(sample) == ["Mine: self._buffer", "redis._private_thing"]
