"""The baseline: a bare Celery app with a no-op task (one Redis INCR, so completions can be
counted), configured exactly like the product's worker app (same serializer, acks_late,
prefetch, transport options and broker). ``bench.stamp`` records how long after its publish a
task started (``bench.transport``)."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from services_ai_plugins.config import get_config
from workers.celery_app import worker_settings

COUNTER = os.environ.get("BENCH_COUNTER", "bench:baseline:done")
LATENCIES = os.environ.get("BENCH_LATENCIES", "bench:baseline:latency")

config = get_config()
app = Celery("bench_baseline", set_as_current=False)
settings = worker_settings(config)
settings.pop("beat_schedule", None)
settings["task_routes"] = {"bench.noop": {"queue": "bench"}, "bench.stamp": {"queue": "bench"}}
settings["task_queues"] = None
settings["task_default_queue"] = "bench"
settings["task_create_missing_queues"] = True
# The product's batch consumer needs a deep prefetch; a plain task gets Celery's usual window.
settings["worker_prefetch_multiplier"] = 4
app.conf.update(settings)

_redis = redis.Redis.from_url(config.broker_url)


@app.task(name="bench.noop", acks_late=True, ignore_result=True)
def noop() -> None:
    _redis.incr(COUNTER)


@app.task(name="bench.stamp", acks_late=True, ignore_result=True)
def stamp(sent: float) -> None:
    """Record publish -> start (seconds) of this task."""
    _redis.rpush(LATENCIES, time.time() - sent)
