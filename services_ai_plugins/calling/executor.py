"""Where plugin code runs: the executor interface, and the plain data that crosses it.

Every hook call of the host goes through :class:`~services_ai_plugins.calling.caller.HookCaller`,
which hands an :class:`Executor` a list of :class:`Job` (one plugin, one hook, several calls)
and gets back one :class:`Reply` per call. Two executors implement it: the inline one runs the
code in this process (trusted plugins, debugging); the sandbox one runs each plugin in a process
of its own. Everything that crosses is plain JSON data (arguments, context entries, the encoded
return value), so the sandbox can take it over a pipe unchanged; what only the host may know
(personal values to redact, the plugin's secret values) never leaves the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from schemas.manifest import Manifest

__all__ = [
    "CRASHED",
    "ERROR",
    "FAILURE_STATUSES",
    "RETRY",
    "SKIPPED",
    "SUCCESS",
    "TIMEOUT",
    "Call",
    "Executor",
    "Failure",
    "Frame",
    "Inspection",
    "Job",
    "PluginCode",
    "Reply",
]

SUCCESS = "success"
ERROR = "error"
TIMEOUT = "timeout"
#: The process running the call died under it (a crash, ``os._exit``, out of memory, killed).
CRASHED = "crashed"
#: The plugin raised ``TransientError``: the call is tried again later.
RETRY = "retry"
#: The host did not call the plugin (its breaker is open).
SKIPPED = "skipped"
FAILURE_STATUSES = (ERROR, TIMEOUT, CRASHED)


@dataclass(frozen=True)
class PluginCode:
    """A plugin's code, as the host checked it: a folder (archive plugins) or an entry point."""

    plugin_id: str
    version: str
    #: The archive's sha256 (``entry-point:<dist>`` for pip-installed plugins).
    sha256: str
    manifest: Manifest
    #: The extracted folder, checked against the stored digest before it is handed out.
    root: Path | None = None
    #: ``module:attribute`` of a pip-installed plugin.
    entry_point: str | None = None


@dataclass(frozen=True)
class Call:
    """One call of a hook. ``args`` and ``context`` are JSON data and go to the plugin;
    ``redact`` (values to keep out of errors, such as the event's personal data) stays here."""

    args: Mapping[str, Any]
    context: Mapping[str, Any] = field(default_factory=dict)
    redact: Iterable[str] = ()


@dataclass(frozen=True)
class Frame:
    """One frame of a plugin's traceback, inside the plugin's own files."""

    file: str
    line: int
    function: str
    text: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.function}"


@dataclass(frozen=True)
class Failure:
    """What a plugin raised: the exception's type and message, and the plugin's own frames."""

    kind: str
    message: str
    frames: tuple[Frame, ...] = ()


@dataclass(frozen=True)
class Reply:
    """What one call came to, before the hook's policy is applied.

    ``value_json`` is the return value encoded as JSON where the call ran (which also freezes
    it); ``failure`` is what the plugin raised; ``reason`` is the runner's own account (a time
    limit, a value that cannot be encoded, a process that died, code that would not load).
    """

    status: str
    value_json: str | None = None
    failure: Failure | None = None
    reason: str | None = None
    duration_ms: float = 0.0


@dataclass(frozen=True)
class Job:
    """Calls of one hook of one plugin, made in order."""

    code: PluginCode
    hook: str
    calls: Sequence[Call]
    #: The plugin's own typed settings, secrets decrypted: sent for this plugin alone.
    settings: Mapping[str, Any]
    #: Seconds each call may take, on the wall clock.
    time_limit: float
    #: The plugin holds the ``network`` permission.
    network: bool = False
    #: Largest reply of one call the policy keeps (a sandbox sending more is stopped).
    max_bytes: int = 1 << 20


@dataclass(frozen=True)
class Inspection:
    """What a plugin's code turned out to implement: hook -> the argument names it takes."""

    hooks: Mapping[str, tuple[str, ...]]


class Executor(Protocol):
    """Runs plugin code. ``run`` never raises for what a plugin does.

    A job's replies come back in the order of its calls; the list stops early at the first
    call that timed out or crashed (the caller decides whether to go on with the rest).
    """

    #: ``inline`` or ``process``.
    mode: str

    def inspect(self, code: PluginCode, time_limit: float) -> Inspection:
        """Import the plugin's code and say what it implements; raises ``PluginLoadError``."""
        ...

    def run(self, jobs: Sequence[Job]) -> list[list[Reply]]: ...

    def prepare(self, jobs: Sequence[Job]) -> None:
        """Load (or start the sandbox of) each job's plugin now, so the first events do not
        wait for it (a worker's warm-up); a failure is left for the first call to report."""
        ...

    def forget(self, plugin_id: str) -> None:
        """Drop what is loaded or running for the plugin (its registry state changed)."""
        ...

    def close(self) -> None: ...

    def protections(self) -> dict[str, Any]:
        """What keeps plugin code from the host in this mode (``status`` shows it)."""
        ...
