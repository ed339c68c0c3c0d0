"""What Linux says of a process in ``/proc/PID/stat``: whether it still runs (and is the same
process: its start time), and the CPU time it has used. The one reader of that file."""

from __future__ import annotations

import os

__all__ = ["cpu_seconds", "start_time"]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _fields(pid: int) -> list[bytes] | None:
    """The fields after the command name (field 3 on), or ``None`` if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data.rsplit(b")", 1)[1].split()  # the name (field 2) may hold spaces and brackets


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22): with the pid, it names one
    process even after the pid is reused. ``None`` if it does not run (a zombie, dead but not
    yet reaped, does not)."""
    fields = _fields(pid)
    if fields is None or len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode()


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time the process has used (fields 14 and 15), or ``None``."""
    fields = _fields(pid)
    if fields is None or len(fields) < 13:
        return None
    try:
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except ValueError:
        return None
