"""The Celery app, configured from the environment (see ``services_ai_plugins.config``)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from services_ai_plugins.config import Config, get_config
from services_ai_plugins.infra.broker import WIDGET_TICK_TASK, celery_settings


def worker_settings(config: Config) -> dict[str, Any]:
    soft = max(config.task_time_limit - 30, 5)
    return {
        **celery_settings(config),
        # A message is acknowledged only once its results are committed; a worker that dies
        # mid-task has its messages delivered again (and the results already stored are kept).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        # Bounded, but larger than a batch: the batch consumer needs a batch's worth in hand.
        "worker_prefetch_multiplier": max(4, 2 * config.batch_size),
        "task_soft_time_limit": soft,
        "task_time_limit": config.task_time_limit,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_deduplicate_successful_tasks": False,
        "beat_schedule": {
            "widgets-tick": {"task": WIDGET_TICK_TASK, "schedule": config.widget_tick_seconds},
        },
        "beat_schedule_filename": str(config.data_dir / "celerybeat-schedule"),
        # Messages it cannot use are dead-lettered with the reason, not only logged and dropped.
        "worker_consumer": "workers.consumer:Consumer",
    }


def make_app(config: Config | None = None) -> Celery:
    config = config or get_config()
    app = Celery("services_ai", set_as_current=True)
    app.conf.update(worker_settings(config))
    app.conf.include = ["workers.tasks"]
    return app


app = make_app()
log = logging.getLogger("services_ai.worker")


@signals.worker_process_init.connect
def _fresh_state_after_fork(**_: Any) -> None:
    # Database connections must never cross a fork; and a pool process loads its plugins
    # before its first task, not during it (that first batch would wait for the imports).
    from workers import state

    state.reset()
    state.warm_up()


@signals.beat_init.connect
def _data_dir_for_beat(**_: Any) -> None:
    get_config().data_dir.mkdir(parents=True, exist_ok=True)


@signals.worker_ready.connect
def _say_how_plugins_are_isolated(**_: Any) -> None:
    """The worker's start line says how plugin code runs here (and, inline, that it is trusted);
    and the consumer's start-up objects are kept out of later garbage collections."""
    from workers import state

    state.freeze_heap()
    config = get_config()
    if config.plugin_isolation == "inline":
        log.warning(
            "plugin isolation: inline (SERVICES_AI_PLUGIN_ISOLATION=inline): plugin code runs in this "
            "worker's own processes, with everything they hold; only for plugins you trust that far"
        )
        return
    from services_ai_plugins.calling.sandbox.protections import probe

    found = probe()
    log.info(
        "plugin isolation: process (a sandbox per plugin); active: %s; not active: %s",
        ", ".join(found["active"]),
        ", ".join(found["inactive"]) or "-",
    )
