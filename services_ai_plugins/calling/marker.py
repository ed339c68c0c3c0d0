"""Which plugin a process is running, in a record that survives the process being killed.

A worker's pool process that is killed hard (Celery's hard time limit after a plugin blocked in
C code, the out-of-memory killer) cannot say why. Before each plugin's calls it writes the
plugin's id into a small file of its own (``<data dir>/running/<pid>``, kept mapped: a write is
a memory copy), and clears it after. The next process to start on the host finds the record of a
process that no longer runs and counts the death against that plugin (``record_crash``), so a
plugin that keeps killing the worker is quarantined instead of retried forever.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from services_ai_plugins.procstat import start_time

__all__ = ["RunningMarker", "dead_markers"]

SIZE = 256


class RunningMarker:
    """This process's record of the plugin it is running."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pid = -1
        self._map: mmap.mmap | None = None

    def _mapped(self) -> mmap.mmap:
        if self._map is None or self._pid != os.getpid():  # a forked child keeps its own record
            self.folder.mkdir(parents=True, exist_ok=True)
            pid = os.getpid()
            path = self.folder / str(pid)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, SIZE)
                self._map = mmap.mmap(fd, SIZE)
            finally:
                os.close(fd)
            self._pid = pid
            self._write(f"{start_time(pid) or '?'}\n\n")
        return self._map

    def _write(self, text: str) -> None:
        assert self._map is not None
        data = text.encode()[:SIZE].ljust(SIZE, b"\0")
        self._map[:SIZE] = data

    def running(self, plugin_id: str | None) -> None:
        """Say which plugin runs now (``None``: none)."""
        m = self._mapped()
        head = bytes(m[:SIZE]).split(b"\n", 1)[0].decode()
        self._write(f"{head}\n{plugin_id or ''}\n")

    def close(self) -> None:
        if self._map is not None and self._pid == os.getpid():
            self._map.close()
            (self.folder / str(self._pid)).unlink(missing_ok=True)
        self._map = None


def dead_markers(folder: Path) -> list[str]:
    """The plugins that processes which no longer run were running when they died; their
    records are removed."""
    out: list[str] = []
    if not folder.is_dir():
        return out
    for path in folder.iterdir():
        if not path.name.isdigit():
            continue
        try:
            started, plugin_id = path.read_bytes().rstrip(b"\0").decode().split("\n")[:2]
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        now = start_time(int(path.name))
        if now is not None and (started in ("?", now)):
            continue  # still running
        path.unlink(missing_ok=True)
        if plugin_id:
            out.append(plugin_id)
    return out
