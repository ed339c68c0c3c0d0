"""Flower, Celery's monitor, run unchanged (``celery -A workers flower``) against the broker of a
real worker on Redis, and read through its HTTP API.

What it shows, and what it cannot (both checked here, so a change is noticed):

- the workers, their registered tasks and queues: yes, over Celery's remote control (Redis's
  fanout), without any option on the workers;
- tasks: those that send task events (widget refreshes, exports, replays), once the worker sends
  them (``-E``, or Flower's own periodic ``enable_events``); never the events task, whose
  messages celery-batches hands to a pool process as one batch, sending no task event;
- queue lengths (``/api/queues/length``): not with the project's broker settings. The worker's
  Redis transport is ours (``services_ai_plugins.infra.internals.redis``), so the broker URL
  Flower derives starts with that class path, not ``redis://``, and Flower's broker inspector
  does not know it. ``services-ai status`` reports the queue depths instead.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services_ai_plugins.infra.broker import EVENT_TASK, QUEUES, WIDGET_REFRESH_TASK
from tests.integration import CELERY, READY_TIMEOUT, Deployment, Worker, free_port, lead, wait_for

pytestmark = pytest.mark.integration

USER = "ops"


@dataclass
class Flower(Worker):
    """``celery -A workers flower`` as a subprocess: started, stopped (its whole process group)
    and its log attached to a failure report like a worker's."""

    port: int = 0

    @property
    def command(self) -> list[str]:
        return [str(CELERY), "-A", "workers", "flower", f"--port={self.port}", "--address=127.0.0.1"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Flower:
        def answers() -> bool:
            try:
                return httpx.get(f"{self.url}/healthcheck", timeout=2).text == "OK"
            except httpx.HTTPError:
                return False

        wait_for(answers, "Flower to answer /healthcheck", timeout=timeout, interval=0.2, workers=[self])
        return self


@pytest.fixture
def password() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture
def flower(deployment: Deployment, password: str) -> Iterator[Flower]:
    """Flower on a free port, configured as in docker-compose.yml: the broker's URL, a data
    folder and ``FLOWER_BASIC_AUTH``; no database, no secret key.

    It is one of the deployment's processes, so the deployment stops it (warm, then SIGKILL to
    its process group) however the test ends, and a failure report carries its log."""
    data_dir = deployment.root / "flower"
    env = {
        k: v
        for k, v in deployment.env(data_dir).items()
        if k not in ("DATABASE_URL", "SERVICES_AI_SECRET_KEY") and not k.startswith("FLOWER_")
    }
    env["FLOWER_BASIC_AUTH"] = f"{USER}:{password}"
    node = Flower(
        name="flower",
        env=env,
        data_dir=data_dir,
        log_path=deployment.root / "logs" / "flower.log",
        port=free_port(),
    )
    node.log_path.parent.mkdir(parents=True, exist_ok=True)
    deployment.workers.append(node)
    try:
        yield node.start()
    finally:
        node.stop(grace=10)


def get(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
    return response.json()


def test_flower_lists_the_worker_and_its_tasks(deployment: Deployment, flower: Flower, password: str) -> None:
    """Proves: Flower started with the project's app and only a port, an address and basic auth
    finds a real worker on Redis by its node name, with the project's tasks (the events task
    among them) and queues; it refuses its API without the credentials; a widget refresh the
    worker ran shows in its task list, with the worker's name and SUCCESS; an event published
    with the Publisher is processed but is not listed (batched: no task events); queue lengths
    are refused as an unsupported broker."""
    # The worker as the integration tests run it, plus task events (its configuration has
    # them off; -E turns them on, as Flower's periodic enable_events also does).
    worker = deployment.start_worker("watched", args=["-E"])
    flower.wait_ready()
    node = f"{worker.name}@{socket.gethostname()}"

    # Basic auth guards the API (and the pages); only /healthcheck and /metrics are open.
    assert httpx.get(f"{flower.url}/api/workers", timeout=10).status_code == 401
    assert httpx.get(f"{flower.url}/api/workers", auth=(USER, "wrong"), timeout=10).status_code == 401
    assert httpx.get(f"{flower.url}/", auth=(USER, "wrong"), timeout=10).status_code == 401

    with httpx.Client(base_url=flower.url, auth=(USER, password), timeout=15) as api:
        # Workers: asked over remote control (refresh=1 inspects now; without it, Flower answers
        # from what it last heard).
        info = wait_for(
            lambda: get(api, "/api/workers", refresh=1).get(node),
            f"Flower to list {node}",
            timeout=30,
            workers=[worker, flower],
        )
        assert EVENT_TASK in info["registered"]
        assert WIDGET_REFRESH_TASK in info["registered"]
        assert {q["name"] for q in info["active_queues"]} == set(QUEUES)
        assert info["stats"]["pool"]["max-concurrency"] == worker.concurrency
        assert node in get(api, "/api/workers")
        one = get(api, "/api/workers", workername=node, refresh=1)[node]
        assert "active" in one
        assert "reserved" in one

        # An event through the real publisher is processed by the watched worker ...
        event_id = deployment.publisher.publish(lead(1))
        deployment.wait_done([event_id])
        # ... and a widget refresh queued the way the CLI and the web app queue it (the plugin
        # does not exist: the task logs that and succeeds).
        deployment.host.tasks.refresh_widget("no-such-plugin")

        def refreshed() -> list[dict[str, Any]]:
            tasks = get(api, "/api/tasks", taskname=WIDGET_REFRESH_TASK)
            return [t for t in tasks.values() if t["state"] == "SUCCESS"]

        done = wait_for(
            refreshed, "Flower to list the widget refresh as SUCCESS", timeout=30, workers=[worker]
        )
        assert [(t["worker"], t["args"]) for t in done] == [(node, "['no-such-plugin']")]

        # The events task sends no task events (celery-batches), so Flower never lists it. Its
        # events arrive in order, so had the event sent any, they would be in by now.
        listed = get(api, "/api/tasks")
        assert EVENT_TASK not in {t["name"] for t in listed.values()}, (
            "Flower lists the events task now: update the Flower paragraph of the README"
        )
        assert api.get(f"/api/task/info/{event_id}").status_code == 404

        # Queue lengths: Flower's broker inspector does not know our transport's URL.
        queues = api.get("/api/queues/length")
        assert queues.status_code == 404, (
            f"Flower reports queue lengths now ({queues.text[:200]}): update the README"
        )
        assert "broker is not supported" in queues.text

    assert flower.exit_code is None, "Flower exited during the test"
