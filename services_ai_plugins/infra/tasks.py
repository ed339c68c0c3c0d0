"""The task queue: work that runs on a worker, not in the process that asks for it.

Widget refreshes, exports and replays call plugin code, so the CLI and the web app never run
them themselves: they queue them here. :class:`CeleryTaskQueue` sends them to the workers by
task name (it imports nothing of ``workers``); :class:`InlineTaskQueue`, its twin for tests and
one-process tools, runs them at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from services_ai_plugins.config import Config
from services_ai_plugins.errors import BrokerUnavailableError, one_line
from services_ai_plugins.infra.broker import (
    EXPORT_TASK,
    EXPORTS_QUEUE,
    LIFECYCLE_QUEUE,
    REPLAY_TASK,
    WIDGET_REFRESH_TASK,
    WIDGETS_QUEUE,
    safe_url,
    sender_app,
)

__all__ = ["CeleryTaskQueue", "InlineTaskQueue", "TaskQueue"]


class TaskQueue(Protocol):
    kind: str

    def refresh_widget(self, plugin_id: str) -> None: ...

    def run_export(self, export_id: str) -> None: ...

    def replay(
        self, plugin_id: str, since: datetime, until: datetime | None, include_failed: bool
    ) -> None: ...


class CeleryTaskQueue:
    """Sends each piece of work to its queue on the broker."""

    kind = "celery"

    def __init__(self, config: Config) -> None:
        self.config = config

    def _send(self, task: str, queue: str, args: list[Any]) -> None:
        try:
            sender_app(self.config).send_task(
                task,
                args=args,
                queue=queue,
                retry=True,
                retry_policy={
                    "max_retries": self.config.publish_retries,
                    "interval_start": 0.1,
                    "interval_max": 3.0,
                },
            )
        except Exception as exc:  # kombu/redis/amqp each raise their own connection errors
            raise BrokerUnavailableError(
                f"the broker at {safe_url(self.config.broker_url)} did not take the {queue} task: {one_line(exc, 200)}"
            ) from exc

    def refresh_widget(self, plugin_id: str) -> None:
        self._send(WIDGET_REFRESH_TASK, WIDGETS_QUEUE, [plugin_id])

    def run_export(self, export_id: str) -> None:
        self._send(EXPORT_TASK, EXPORTS_QUEUE, [export_id])

    def replay(self, plugin_id: str, since: datetime, until: datetime | None, include_failed: bool) -> None:
        self._send(
            REPLAY_TASK,
            LIFECYCLE_QUEUE,
            [plugin_id, since.isoformat(), until.isoformat() if until else None, include_failed],
        )


class InlineTaskQueue:
    """Runs each piece of work now, in this process (tests, one-process tools)."""

    kind = "inline"

    def __init__(
        self,
        refresh_widget: Callable[[str], Any],
        run_export: Callable[[str], Any],
        replay: Callable[[str, datetime, datetime | None, bool], Any],
    ) -> None:
        self._refresh_widget = refresh_widget
        self._run_export = run_export
        self._replay = replay

    def refresh_widget(self, plugin_id: str) -> None:
        self._refresh_widget(plugin_id)

    def run_export(self, export_id: str) -> None:
        self._run_export(export_id)

    def replay(self, plugin_id: str, since: datetime, until: datetime | None, include_failed: bool) -> None:
        self._replay(plugin_id, since, until, include_failed)
