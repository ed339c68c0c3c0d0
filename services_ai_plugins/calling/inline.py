"""The inline executor: plugin code runs in this process (``SERVICES_AI_PLUGIN_ISOLATION=inline``).

For trusted plugins and for debugging. A plugin's exceptions, hangs in Python code and huge
return values are contained (per-call time limits by interval timer, errors captured, values
encoded at once), but it shares the process with the host: it can read what the host holds. The
sandbox executor is the default for that reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services_ai_plugins.calling.context import plugin_logger
from services_ai_plugins.calling.executor import (
    CRASHED,
    ERROR,
    TIMEOUT,
    Inspection,
    Job,
    PluginCode,
    Reply,
)
from services_ai_plugins.calling.invocation import Invoker, inspect_loaded
from services_ai_plugins.calling.loader import LoadedPlugin, PluginLoader, entry_point_object
from services_ai_plugins.calling.marker import RunningMarker
from services_ai_plugins.errors import PluginLoadError, ServicesAIError, one_line

__all__ = ["InlineExecutor", "load_code", "secret_values"]

log = logging.getLogger(__name__)

#: How long a plugin that failed to load is left alone before the next try.
RETRY_LOAD_AFTER = 30.0


def load_code(loader: PluginLoader, code: PluginCode) -> LoadedPlugin:
    """Import a plugin's checked code into ``loader`` (raises ``PluginLoadError`` and friends)."""
    if code.entry_point:
        try:
            obj = entry_point_object(code.entry_point)
        except Exception as exc:
            raise PluginLoadError(
                code.plugin_id, f"entry point {code.entry_point}: {one_line(exc, 300)}"
            ) from None
        return loader.load_object(code.manifest, obj)
    if code.root is None:
        raise PluginLoadError(code.plugin_id, "has no code to load")
    return loader.load_folder(code.manifest, code.root, tag=code.sha256)


def secret_values(code: PluginCode, settings: Mapping[str, Any]) -> tuple[str, ...]:
    """The values of the plugin's secret settings (to redact from what it logs and raises)."""
    out = []
    for name, value in settings.items():
        spec = code.manifest.setting(name)
        if spec is not None and spec.is_secret and value:
            out.append(str(value))
    return tuple(out)


@dataclass
class _Loaded:
    sha256: str
    loader: PluginLoader
    invoker: Invoker | None
    error: str | None
    at: float


class InlineExecutor:
    """Loads each plugin once per process (again when its code changes) and calls it here."""

    mode = "inline"

    def __init__(self, import_time_limit: float = 10.0, marker: RunningMarker | None = None) -> None:
        self.import_time_limit = import_time_limit
        #: Says which plugin runs, in a record that survives this process being killed under it.
        self.marker = marker
        self._plugins: dict[str, _Loaded] = {}

    def inspect(self, code: PluginCode, time_limit: float) -> Inspection:
        loader = PluginLoader(import_time_limit=time_limit)
        try:
            return inspect_loaded(load_code(loader, code))
        finally:
            loader.unload_all()

    def _invoker(self, job: Job) -> Invoker | str:
        code = job.code
        entry = self._plugins.get(code.plugin_id)
        if entry is not None and entry.sha256 != code.sha256:
            self.forget(code.plugin_id)
            entry = None
        if entry is not None and entry.error is not None and time.monotonic() - entry.at > RETRY_LOAD_AFTER:
            self.forget(code.plugin_id)
            entry = None
        if entry is None:
            loader = PluginLoader(import_time_limit=self.import_time_limit)
            try:
                loaded = load_code(loader, code)
            except ServicesAIError as exc:
                entry = _Loaded(code.sha256, loader, None, f"could not be loaded: {exc}", time.monotonic())
            except Exception as exc:  # never let one plugin stop the others
                entry = _Loaded(
                    code.sha256, loader, None, f"could not be loaded: {one_line(exc)}", time.monotonic()
                )
            else:
                logger = plugin_logger(code.plugin_id, secret_values(code, job.settings))
                entry = _Loaded(
                    code.sha256, loader, Invoker(loaded, job.settings, logger), None, time.monotonic()
                )
            if entry.error:
                log.error("plugin %s %s", code.plugin_id, entry.error)
            self._plugins[code.plugin_id] = entry
        if entry.invoker is None:
            return entry.error or "could not be loaded"
        if entry.invoker.settings != job.settings:  # settings changed: a new context, same code
            logger = plugin_logger(code.plugin_id, secret_values(code, job.settings))
            entry.invoker = Invoker(entry.invoker.loaded, job.settings, logger)
        return entry.invoker

    def prepare(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._invoker(job)  # a load error is kept and reported by the first call

    def run(self, jobs: Sequence[Job]) -> list[list[Reply]]:
        out: list[list[Reply]] = []
        for job in jobs:
            invoker = self._invoker(job)
            if isinstance(invoker, str):
                out.append([Reply(ERROR, reason=invoker)] * len(job.calls))
                continue
            replies: list[Reply] = []
            if self.marker is not None:
                self.marker.running(job.code.plugin_id)
            try:
                for call in job.calls:
                    reply = invoker.call(job.hook, call, job.time_limit)
                    replies.append(reply)
                    if reply.status in (TIMEOUT, CRASHED):
                        break
            finally:
                if self.marker is not None:
                    self.marker.running(None)
            out.append(replies)
        return out

    def forget(self, plugin_id: str) -> None:
        entry = self._plugins.pop(plugin_id, None)
        if entry is not None:
            entry.loader.unload_all()

    def close(self) -> None:
        for plugin_id in list(self._plugins):
            self.forget(plugin_id)

    def protections(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "active": [
                "per-call time limit (interval timer)",
                "errors captured",
                "results encoded and capped",
            ],
            "inactive": [
                "separate process",
                "clean environment",
                "unprivileged user",
                "resource limits",
                "read-only code",
                "no network",
            ],
        }
