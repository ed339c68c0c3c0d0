"""What one worker process keeps between tasks: its host (with its plugin runtime and batch
processor)."""

from __future__ import annotations

import gc
import logging
import os
import threading

from services_ai_plugins.host import Host

log = logging.getLogger(__name__)
_host: tuple[int, Host] | None = None
_lock = threading.Lock()


def get() -> Host:
    """This process's host, made on first use (after any fork)."""
    global _host
    current = _host
    if current is not None and current[0] == os.getpid():
        return current[1]
    with _lock:
        if _host is None or _host[0] != os.getpid():
            _host = (os.getpid(), Host().ready())
        return _host[1]


def warm_up() -> None:
    """Build this process's host and read its plugins now, and connect to the database, so the
    first batch does not wait for it. Failing here is not fatal: the first task tries again (and
    reports the error there)."""
    try:
        host = get()
        for plugin_id in host.count_killed_processes():
            log.error("plugin %s was running when a worker process was killed; counted against it", plugin_id)
        host.runtime.refresh(force=True)
        host.caller.prepare(host.runtime.plugins.values())  # sandboxes started, code loaded
        with host.processor.store.connection() as conn:
            conn.exec_driver_sql("SELECT 1")
            conn.rollback()
        freeze_heap()
        log.info(
            "pool process %d ready: %d plugin(s) enabled, plugin isolation %s",
            os.getpid(),
            len(host.runtime.plugins),
            host.executor.mode,
        )
    except Exception:
        log.warning("warm-up failed; the first task will try again", exc_info=True)
        reset()


def freeze_heap() -> None:
    """Collect once, then keep what the process holds after start-up (modules, the host, its
    plugins) out of every later garbage collection (``gc.freeze``). A full collection walks
    every object the process holds: measured here, 56-122 ms in a pool process and 75 ms in
    the consumer, several times a minute under load, which was the p99 of publish -> committed
    (docs/BENCHMARKS.md). Objects made later are collected as before; a cycle among the frozen
    ones that becomes garbage is never freed (start-up objects live as long as the process)."""
    gc.collect()
    gc.freeze()


def reset() -> None:
    """Forget the host (a forked child must build its own)."""
    global _host
    with _lock:
        _host = None
