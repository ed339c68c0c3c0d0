"""Helpers for plugin authors' own tests: load a plugin folder and call its hooks as the worker
would.

    from services_ai_plugins.testing import PluginHarness

    def test_lead_created():
        with PluginHarness("path/to/my_plugin", settings={"threshold": 5}) as plugin:
            assert plugin.call("lead_created", lead={"id": "l1"})["status"] == "success"

The arguments and the context are built by the same code as in the worker (``lead`` reads as
attributes too; ``context`` has ``idempotency_key``, ``recent_results`` or ``records`` where the
worker gives them), settings are validated as the registry validates them, the manifest is
checked against the code as at install, and what the hook returns goes through the hook's
policy (HTML sanitised, widget titles made plain text, size caps): the value you get back is the
one the host would store. Exceptions are not captured and there is no time limit, so a failing
test shows the plugin's own traceback.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from schemas.errors import ContractError, FieldError
from schemas.manifest import parse_manifest
from services_ai_plugins.calling.caller import HookCaller, Target
from services_ai_plugins.calling.context import build_context, plugin_logger
from services_ai_plugins.calling.executor import SUCCESS, Call, PluginCode, Reply
from services_ai_plugins.calling.inline import InlineExecutor, secret_values
from services_ai_plugins.calling.invocation import Invoker, encode_value, inspect_loaded
from services_ai_plugins.calling.loader import LoadedPlugin, PluginLoader, manifest_info
from services_ai_plugins.calling.permissions import EVENT_HOOKS
from services_ai_plugins.calling.requests import (
    event_call,
    export_call,
    lifecycle_call,
    settings_page_call,
    widget_call,
)
from services_ai_plugins.config import Config
from services_ai_plugins.errors import ManifestError, PluginLoadError, SettingsError
from services_ai_plugins.lifecycle.settings import check_value
from services_ai_plugins.lifecycle.validation import check_hooks

__all__ = ["PluginHarness"]

_EVENT_TYPES = {hook: kind for kind, hook in EVENT_HOOKS.items()}
#: Context entries that belong to one call (the rest are the plugin's own: id, settings, logger).
_CALL_ENTRIES = ("recent_results", "records", "user", "event", "idempotency_key")


class PluginHarness:
    """A plugin folder loaded in a private Pluggy manager, with settings you choose."""

    def __init__(self, folder: str | Path, settings: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder).resolve()
        try:
            self.manifest = parse_manifest((self.folder / "manifest.json").read_bytes())
        except ContractError as exc:
            raise ManifestError.from_contract(exc) from None
        self.settings = self._settings(settings or {})
        self._loader = PluginLoader()
        self.loaded: LoadedPlugin = self._loader.load_folder(self.manifest, self.folder)
        check_hooks(self.manifest, inspect_loaded(self.loaded))
        code = PluginCode(
            self.manifest.plugin_id, self.manifest.version, "harness", self.manifest, root=self.folder
        )
        secrets = secret_values(code, self.settings)
        self._invoker = Invoker(self.loaded, self.settings, plugin_logger(self.manifest.plugin_id, secrets))
        self._target = Target(
            plugin_id=self.manifest.plugin_id,
            version=self.manifest.version,
            manifest=self.manifest,
            granted=frozenset(self.manifest.permission_names),
            enabled=True,
            settings=self.settings,
            secrets=secrets,
            code=code,
        )
        self._caller = HookCaller(InlineExecutor(), Config())

    def _settings(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every declared setting: the value given (checked as the registry checks it), else
        its default."""
        errors: list[FieldError] = []
        out: dict[str, Any] = {}
        for name in given:
            if self.manifest.setting(name) is None:
                errors.append(FieldError(name, "is not a setting of this plugin"))
        for spec in self.manifest.settings:
            try:
                out[spec.name] = check_value(spec, given[spec.name]) if spec.name in given else spec.default
            except ValueError as exc:
                errors.append(FieldError(spec.name, str(exc)))
        if errors:
            raise SettingsError(self.manifest.plugin_id, errors)
        return out

    def request(self, hook: str, **kwargs: Any) -> Call:
        """The call the worker would make, from what the test gives (``context=`` may carry the
        call's own entries: ``recent_results``, ``records``, ``user``, ``event``)."""
        given = {k: v for k, v in dict(kwargs.pop("context", None) or {}).items() if k in _CALL_ENTRIES}
        call = self._request(hook, **{**given, **kwargs})
        if not given:
            return call
        return Call(call.args, {**call.context, **given}, call.redact)

    def _request(self, hook: str, **kwargs: Any) -> Call:
        plugin_id = self.manifest.plugin_id
        user = kwargs.get("user")
        if hook in _EVENT_TYPES:
            data = kwargs.get("lead") if hook == "lead_created" else kwargs.get("booking")
            meta = {
                "event_id": kwargs.get("event_id", f"test-{uuid.uuid4()}"),
                "type": _EVENT_TYPES[hook],
                "occurred_at": datetime.now(UTC).isoformat(),
                "source": "test",
                "attempt": 1,
            }
            return event_call(hook, plugin_id, dict(data or {}), kwargs.get("previous_state"), meta)
        if hook == "dashboard_widget":
            return widget_call(plugin_id, list(kwargs.get("recent_results", [])), user)
        if hook == "settings_page":
            return settings_page_call(plugin_id, user)
        if hook == "data_export":
            export_type = kwargs.get("export_type") or kwargs.get("data_type") or "leads"
            return export_call(
                export_type,
                kwargs.get("start_date"),
                kwargs.get("end_date"),
                kwargs.get("filters") or {},
                list(kwargs.get("records", [])),
                user,
            )
        info = kwargs.get("plugin_info")
        if hook == "plugin_installed" and info is None:
            info = manifest_info(self.manifest)
        return lifecycle_call(plugin_id, info, user)

    def context(self, **entries: Any) -> dict[str, Any]:
        """A context as a hook receives it, with these per-call entries (``recent_results``,
        ``records``, ``user``...); pass it on as ``call(hook, context=...)``."""
        call = Call({}, {k: v for k, v in entries.items() if k in _CALL_ENTRIES})
        return build_context(self.manifest, dict(self.settings), self._invoker.logger, extra=call.context)

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` as the worker would; returns what the host would store."""
        impl = self.loaded.hooks.get(hook)
        if impl is None:
            raise PluginLoadError(self.manifest.plugin_id, f"does not implement {hook}")
        call = self.request(hook, **kwargs)
        value = impl.function(**self._invoker.arguments(hook, call))
        encoded, problem = encode_value(value)
        if problem is not None:
            raise PluginLoadError(self.manifest.plugin_id, f"{hook} {problem}")
        outcome = self._caller.outcome(self._caller.policy(hook), self._target, call, Reply(SUCCESS, encoded))
        if not outcome.ok:
            raise PluginLoadError(self.manifest.plugin_id, outcome.error or f"{hook} failed")
        return outcome.result

    def close(self) -> None:
        self._loader.unload_all()

    def __enter__(self) -> PluginHarness:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
