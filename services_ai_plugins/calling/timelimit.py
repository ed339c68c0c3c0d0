"""Per-call time limits for plugin code.

In the main thread (Celery's prefork children and the solo pool run tasks there) a SIGALRM
interval timer interrupts the call, Python code and ``time.sleep`` alike, at about 0.6 us per
call. :class:`PluginTimeout` derives from ``BaseException`` so a plugin's ``except Exception``
cannot swallow it, and the timer keeps firing every 50 ms until the call gives up, so even a bare
``except:`` only delays it. Code blocked inside a C call that never returns to Python is out of
reach of any in-process limit; Celery's hard time limit kills the worker child for that.

Off the main thread (the in-process demo worker, threaded pools) the call runs in a helper
thread that is abandoned if it overruns: the caller gets its timeout on time, the stray thread
finishes on its own.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module behind signal
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

T = TypeVar("T")

_REFIRE_SECONDS = 0.05
_HAS_ALARM = hasattr(signal, "setitimer")
_MAIN_THREAD = threading.main_thread()
_SIGALRM = int(getattr(signal, "SIGALRM", 14))
_ITIMER_REAL = int(getattr(signal, "ITIMER_REAL", 0))
_setitimer: Callable[[int, float, float], tuple[float, float]] = getattr(
    signal, "setitimer", lambda *_: (0.0, 0.0)
)
_armed = False


class PluginTimeout(BaseException):
    """A plugin call ran past its time limit."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"ran past its time limit of {seconds:g}s")


class _Alarm(BaseException):
    """Raised by the signal handler; turned into PluginTimeout by the armed call."""


def _on_alarm(signum: int, frame: Any) -> None:
    if _armed:
        raise _Alarm()


def call_with_time_limit(fn: Callable[[], T], seconds: float) -> T:
    """Run ``fn()``; raise :class:`PluginTimeout` if it takes longer than ``seconds``.

    Our SIGALRM handler stays installed between calls when it replaced only the default; a
    handler someone else installed (a test runner's, say) is put back afterwards, with its timer
    less the time this call took.
    """
    global _armed
    if not (_HAS_ALARM and threading.current_thread() is _MAIN_THREAD) or _armed:
        return _call_in_thread(fn, seconds)
    # _signal: the C functions without the enum conversions of signal's wrappers (hot path).
    previous = _signal.getsignal(_SIGALRM)
    foreign = previous is not _on_alarm and callable(previous)
    if previous is not _on_alarm:
        _signal.signal(_SIGALRM, _on_alarm)
    started = time.monotonic() if foreign else 0.0
    outer_delay = outer_interval = 0.0
    try:
        # The alarm can also land between arming and the call, or as the call returns and
        # before it is disarmed: all of it is the call's time, so a timeout too (it was
        # "error: _Alarm" before).
        try:
            _armed = True
            outer_delay, outer_interval = _setitimer(_ITIMER_REAL, seconds, _REFIRE_SECONDS)
            return fn()
        finally:
            _setitimer(_ITIMER_REAL, 0, 0)
            _armed = False
    except _Alarm:
        _setitimer(_ITIMER_REAL, 0, 0)  # it may have landed before the disarm above
        raise PluginTimeout(seconds) from None
    finally:
        _armed = False
        if foreign:
            _signal.signal(_SIGALRM, previous)
            if outer_delay > 0:
                left = max(outer_delay - (time.monotonic() - started), 0.001)
                _setitimer(_ITIMER_REAL, left, outer_interval)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _call_in_thread(fn: Callable[[], T], seconds: float) -> T:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="plugin-call")
    future = _pool.submit(fn)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        # The thread cannot be stopped; give the caller its answer and let it finish alone.
        # A fresh pool keeps one stuck call from starving the next ones.
        with _pool_lock:
            stuck, _pool = _pool, None
        if stuck is not None:
            stuck.shutdown(wait=False)
        raise PluginTimeout(seconds) from None
