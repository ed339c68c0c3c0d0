"""Helpers for plugin authors' own tests: load a plugin folder and call its hooks directly.

    from services_ai_plugins.testing import PluginHarness

    def test_lead_created():
        with PluginHarness("path/to/my_plugin", settings={"threshold": 5}) as plugin:
            assert plugin.call("lead_created", lead={"id": "l1"})["status"] == "success"

Hooks are called without the host's time limit or error capture, so a failing test shows the
plugin's own traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from schemas.errors import ContractError
from schemas.manifest import parse_manifest
from services_ai_plugins.calling.context import build_context
from services_ai_plugins.calling.loader import LoadedPlugin, PluginLoader
from services_ai_plugins.errors import ManifestError, PluginLoadError


class PluginHarness:
    """A plugin folder loaded in a private Pluggy manager, with settings you choose."""

    def __init__(self, folder: str | Path, settings: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder).resolve()
        try:
            self.manifest = parse_manifest((self.folder / "manifest.json").read_bytes())
        except ContractError as exc:
            raise ManifestError.from_contract(exc) from None
        self.settings = {s.name: s.default for s in self.manifest.settings}
        self.settings.update(settings or {})
        self._loader = PluginLoader()
        self.loaded: LoadedPlugin = self._loader.load_folder(self.manifest, self.folder)

    def context(self, **extra: Any) -> dict[str, Any]:
        logger = logging.getLogger(f"services_ai.plugin.{self.manifest.plugin_id}")
        return build_context(self.manifest, self.settings, logger, extra=extra)

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` with ``kwargs`` (``plugin_id`` and ``context`` filled in when absent)."""
        call = self.loaded.hooks.get(hook)
        if call is None:
            raise PluginLoadError(self.manifest.plugin_id, f"does not implement {hook}")
        kwargs.setdefault("plugin_id", self.manifest.plugin_id)
        kwargs.setdefault("context", self.context())
        if hook == "data_export":
            kwargs.setdefault("data_type", kwargs.get("export_type"))
        return call.function(**{name: kwargs[name] for name in call.argnames if name in kwargs})

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
