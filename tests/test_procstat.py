"""Reading /proc/PID/stat: one process named by pid and start time; its CPU time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from services_ai_plugins import procstat


def test_a_running_process_has_a_start_time_that_stays_the_same() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        first = procstat.start_time(child.pid)
        assert first is not None and first.isdigit()
        assert procstat.start_time(child.pid) == first
        assert procstat.start_time(os.getpid()) != first  # another process, another start
    finally:
        child.kill()
        child.wait()


def test_a_zombie_and_a_gone_process_have_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while procstat.start_time(child.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)  # exited, not yet reaped: a zombie
    assert procstat.start_time(child.pid) is None
    assert procstat.cpu_seconds(child.pid) is not None  # the zombie's record is still there
    child.wait()  # reaped: gone
    assert procstat.start_time(child.pid) is None
    assert procstat.cpu_seconds(child.pid) is None


def test_cpu_seconds_counts_what_the_process_used() -> None:
    before = procstat.cpu_seconds(os.getpid())
    assert before is not None
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    after = procstat.cpu_seconds(os.getpid())
    assert after is not None and after - before >= 0.2
