"""What one worker process keeps between tasks: its host, its loaded plugins, its processor."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from services_ai_plugins.host import Host
from services_ai_plugins.pipeline import EventProcessor
from services_ai_plugins.runtime import PluginRuntime


@dataclass
class WorkerState:
    pid: int
    host: Host
    runtime: PluginRuntime
    processor: EventProcessor


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


def reset() -> None:
    """Forget the state (a forked child must build its own)."""
    global _state
    with _lock:
        _state = None
