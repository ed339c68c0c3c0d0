"""Queue and task names, and the Celery settings shared by the worker app and the publisher.

Importing this module imports nothing of the plugin machinery, so the publisher can use it.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery
from kombu.connection import Connection
from kombu.entity import Queue
from kombu.utils.url import maybe_sanitize_url

from services_ai_plugins.config import Config
from services_ai_plugins.errors import ConfigError

EVENTS_QUEUE = "events"
WIDGETS_QUEUE = "widgets"
EXPORTS_QUEUE = "exports"
LIFECYCLE_QUEUE = "lifecycle"
QUEUES = (EVENTS_QUEUE, WIDGETS_QUEUE, EXPORTS_QUEUE, LIFECYCLE_QUEUE)

EVENT_TASK = "services_ai.events.process"
WIDGET_TICK_TASK = "services_ai.widgets.tick"
WIDGET_REFRESH_TASK = "services_ai.widgets.refresh"
EXPORT_TASK = "services_ai.exports.run"
REPLAY_TASK = "services_ai.events.replay"


# Named, not imported: the publisher must not load the transports' dependencies (SQLAlchemy).
EMBEDDED_TRANSPORT = "services_ai_plugins.infra.internals.embedded:Transport"
REDIS_TRANSPORT = "services_ai_plugins.infra.internals.redis:Transport"


def safe_url(url: str) -> str:
    """The broker URL with any password masked, for messages."""
    return str(maybe_sanitize_url(url))


def refuse_in_process_broker(config: Config, what: str) -> None:
    """``memory://`` lives inside one process: what another process puts there no worker sees."""
    if config.broker_url.startswith("memory://"):
        raise ConfigError(
            f"BROKER_URL=memory:// is a broker inside one process, so `{what}` here would reach no "
            "worker; unset BROKER_URL and REDIS_URL for the embedded broker in the data folder, or "
            "point them at Redis or RabbitMQ"
        )


def is_redis_url(url: str) -> bool:
    """Whether ``url`` names a Redis broker."""
    return url.startswith(("redis://", "rediss://", "redis+socket://"))


def broker_name(config: Config) -> dict[str, str]:
    """The broker in use, for ``status``: its URL (password masked) and its kind."""
    url = config.broker_url
    kind = "embedded" if config.embedded_broker else url.split(":", 1)[0].split("+", 1)[0]
    return {"url": safe_url(url), "transport": kind}


def transport_class(config: Config) -> str | None:
    """Our transport for the broker URL, where we have one (else kombu's own)."""
    if config.embedded_broker:
        return EMBEDDED_TRANSPORT
    if is_redis_url(config.broker_url):
        return REDIS_TRANSPORT
    return None


def connection(config: Config) -> Connection:
    """A kombu connection to the broker, with the project's transport and options."""
    return Connection(  # type: ignore[no-untyped-call]
        config.broker_url,
        transport=transport_class(config),
        transport_options=transport_options(config),
        connect_timeout=3,
    )


def transport_options(config: Config) -> dict[str, Any]:
    url = config.broker_url
    options: dict[str, Any] = {}
    if config.embedded_broker:
        # Measured (docs/BENCHMARKS.md): a 20 ms poll keeps publish -> task p99 near 30 ms at
        # about 5% of a core for an idle worker; 5 ms halves the latency for three times the CPU.
        options.update(polling_interval=0.02, sweep_interval=5.0, busy_timeout=30.0)
    if is_redis_url(url):
        options.update(
            # Longer than the longest task, or a slow batch is delivered twice.
            visibility_timeout=config.visibility_timeout,
            # How often a live worker looks for messages a dead worker left unacknowledged
            # (kombu's default is about every 100 s whatever the visibility timeout).
            unacked_restore_interval=max(1, min(10, config.visibility_timeout)),
            unacked_restore_throttle=1,
            socket_connect_timeout=3,
            socket_timeout=10,
            retry_on_timeout=True,
            health_check_interval=30,
            # Take and record messages in one step (internals/redis_fetch.py); False: kombu's
            # own BRPOP, which loses a message to a worker killed between the two.
            atomic_fetch=config.redis_atomic_fetch,
            fetch_pause=config.redis_fetch_pause,
        )
    if url.startswith("memory://"):
        # The in-process broker of the demo and of tests: poll often, it costs nothing.
        options["polling_interval"] = 0.005
    if url.startswith(("amqp://", "amqps://", "pyamqp://")):
        # Publisher confirms: publish() returns once RabbitMQ has taken the message.
        options["confirm_publish"] = True
    return options


def celery_settings(config: Config) -> dict[str, Any]:
    """Settings common to every Celery app of the project (worker, beat, publisher)."""
    return {
        "broker_url": config.broker_url,
        # The embedded broker's crash-safe claims; kombu's Redis transport with a crash-safe
        # batch fetch and one client per channel (internals/).
        "broker_transport": transport_class(config),
        "broker_transport_options": transport_options(config),
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "event_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_default_queue": EVENTS_QUEUE,
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],  # type: ignore[no-untyped-call]
        "task_create_missing_queues": False,
        "task_routes": {
            EVENT_TASK: {"queue": EVENTS_QUEUE},
            REPLAY_TASK: {"queue": LIFECYCLE_QUEUE},
            WIDGET_TICK_TASK: {"queue": WIDGETS_QUEUE},
            WIDGET_REFRESH_TASK: {"queue": WIDGETS_QUEUE},
            EXPORT_TASK: {"queue": EXPORTS_QUEUE},
        },
        "timezone": "UTC",
        "enable_utc": True,
    }


def queue_depths(config: Config, queues: tuple[str, ...] = QUEUES) -> dict[str, int | None]:
    """Messages waiting in each queue (``None`` where the broker cannot say)."""
    out: dict[str, int | None] = {}
    with connection(config) as conn:
        conn.ensure_connection(max_retries=1)
        channel = conn.default_channel
        for name in queues:
            try:
                out[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except Exception:
                out[name] = (
                    0 if config.embedded_broker or config.broker_url.startswith(("redis", "memory")) else None
                )
    return out


_apps: dict[str, Celery] = {}
_apps_lock = threading.Lock()


def sender_app(config: Config) -> Celery:
    """A Celery app that only sends (publisher, task queue): no tasks of ours imported, one per
    broker URL per process."""
    key = config.broker_url
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            app = Celery("services_ai_sender", set_as_current=False)
            app.conf.update(celery_settings(config))
            _apps[key] = app
        return app
