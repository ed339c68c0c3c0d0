"""What one worker process keeps between tasks: its host, its loaded plugins, its processor."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from services_ai_plugins.calling.runtime import PluginRuntime
from services_ai_plugins.host import Host
from services_ai_plugins.pipeline.processor import EventProcessor


@dataclass
class WorkerState:
    pid: int
    host: Host
    runtime: PluginRuntime
    processor: EventProcessor


log = logging.getLogger(__name__)
_state: WorkerState | None = None
_lock = threading.Lock()


def get() -> WorkerState:
    """This process's state, made on first use (after any fork)."""
    global _state
    current = _state
    if current is not None and current.pid == os.getpid():
        return current
    with _lock:
        if _state is None or _state.pid != os.getpid():
            host = Host().ready()
            runtime = PluginRuntime(host.registry)
            _state = WorkerState(os.getpid(), host, runtime, EventProcessor(host, runtime))
        return _state


def warm_up() -> None:
    """Build this process's state and load its plugins now. Failing here is not fatal: the
    first task tries again (and reports the error there)."""
    try:
        worker = get()
        worker.runtime.refresh(force=True)
        with worker.processor.store.connection() as conn:  # connect now, not in the first batch
            conn.exec_driver_sql("SELECT 1")
            conn.rollback()
    except Exception:
        log.warning("warm-up failed; the first task will try again", exc_info=True)
        reset()


def reset() -> None:
    """Forget the state (a forked child must build its own)."""
    global _state
    with _lock:
        _state = None
