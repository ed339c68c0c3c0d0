"""Import plugins and register them with Pluggy. This runs plugin code: only executors call it
(in this process for the inline one, inside the sandbox for the other).

Each plugin is imported as a package under a unique module name (``_sai_plugin_<id>_<sha>_<n>``),
so two plugins that both have ``main.py`` or ``utils.py`` never collide, and relative imports
inside a plugin work. Only ``.py`` source is ever imported from a plugin's folder: bytecode
(``__pycache__``, ``.pyc``) and native extensions in it are never looked at, and no bytecode is
written there, so what runs is the source that was reviewed and checked. Unloading unregisters
the plugin and removes every module of its package.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import itertools
import json
import os
import platform
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from packaging.specifiers import SpecifierSet

from schemas.errors import ContractError
from schemas.manifest import HOOK_NAMES, Manifest, parse_manifest
from services_ai_plugins import hookspecs
from services_ai_plugins.calling import compat
from services_ai_plugins.calling.timelimit import PluginTimeout, call_with_time_limit
from services_ai_plugins.errors import ManifestError, PluginLoadError, one_line

__all__ = [
    "ENTRY_POINT_GROUP",
    "EntryPointPlugin",
    "HookCall",
    "LoadedPlugin",
    "PluginLoader",
    "check_python",
    "discover_entry_points",
    "entry_point_object",
    "manifest_info",
    "new_plugin_manager",
]

ENTRY_POINT_GROUP = "services_ai.plugins"
_counter = itertools.count(1)


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles the ``.py`` file every time: never reads nor writes cached bytecode."""

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        source = self.get_data(path)
        return compile(source, path, "exec", dont_inherit=True)

    def set_data(self, path: str, data: Any, *, _mode: int = 0o666) -> None:
        return None  # never write __pycache__ into a plugin's folder


def _source_only_finder(root: str) -> importlib.machinery.FileFinder:
    return importlib.machinery.FileFinder(root, (_SourceOnlyLoader, [".py"]))


def new_plugin_manager() -> pluggy.PluginManager:
    """A Pluggy manager for project ``services_ai`` with this host's hook specs."""
    compat.install()
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


@dataclass(frozen=True)
class HookCall:
    """One plugin's implementation of one hook, ready to be called on its own."""

    function: Any
    argnames: tuple[str, ...]


@dataclass
class LoadedPlugin:
    """A plugin's code as registered in one Pluggy manager."""

    plugin_id: str
    manifest: Manifest
    obj: Any
    module_name: str | None
    hooks: dict[str, HookCall] = field(default_factory=dict)
    #: Folders holding the plugin's own files (its traceback frames are the ones inside them).
    roots: tuple[str, ...] = ()


def _spec_argnames(pm: pluggy.PluginManager, hook: str) -> tuple[str, ...]:
    caller = getattr(pm.hook, hook)
    spec = caller.spec
    return tuple(spec.argnames) if spec is not None else ()


def _impl_argnames(function: Any) -> tuple[str, ...]:
    """Argument names Pluggy will pass (those without defaults; ``self`` excluded)."""
    params = inspect.signature(function).parameters.values()
    return tuple(
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )


def check_python(manifest: Manifest) -> None:
    if manifest.requires_python and not SpecifierSet(manifest.requires_python).contains(
        platform.python_version(), prereleases=True
    ):
        raise ManifestError(
            "requires_python",
            f"needs Python {manifest.requires_python}; this host runs {platform.python_version()}",
        )


def _find_impls(pm: pluggy.PluginManager, obj: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in dir(obj):
        try:
            opts = pm.parse_hookimpl_opts(obj, name)
        except Exception:  # noqa: S112 - a property that raises is simply not a hook
            continue
        if opts is not None:
            found[name] = getattr(obj, name)
    return found


def _entry_file(root: Path, module: str) -> Path | None:
    for candidate in (root / f"{module}.py", root / module / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _drop_modules(prefix: str) -> None:
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


class PluginLoader:
    """Loads plugins into one Pluggy manager, with a time limit on their import."""

    def __init__(self, pm: pluggy.PluginManager | None = None, import_time_limit: float = 10.0):
        self.pm = pm or new_plugin_manager()
        self.import_time_limit = import_time_limit
        self.loaded: dict[str, LoadedPlugin] = {}

    # -- loading ----------------------------------------------------------------------------

    def load_folder(self, manifest: Manifest, root: Path, tag: str = "") -> LoadedPlugin:
        """Import the plugin extracted at ``root`` and register it; checks it against its manifest."""
        plugin_id = manifest.plugin_id
        root = Path(os.path.realpath(root))
        check_python(manifest)
        if _entry_file(root, manifest.entry_module) is None:
            raise ManifestError(
                "entry_point",
                f"{manifest.entry_point!r} names no module in the plugin "
                f"(expected {manifest.entry_module}.py)",
            )
        safe_id = plugin_id.replace("-", "_")
        module_name = f"_sai_plugin_{safe_id}_{tag[:12] or 'dev'}_{next(_counter)}"
        try:
            obj = call_with_time_limit(
                lambda: self._import(manifest, root, module_name), self.import_time_limit
            )
        except PluginTimeout:
            _drop_modules(module_name)
            raise PluginLoadError(
                plugin_id, f"importing {manifest.entry_point} took over {self.import_time_limit:g}s"
            ) from None
        except (ManifestError, PluginLoadError):
            _drop_modules(module_name)
            raise
        except BaseException as exc:  # plugin code may raise anything, SystemExit included
            _drop_modules(module_name)
            raise PluginLoadError(
                plugin_id, f"importing {manifest.entry_point} failed: {one_line(exc, 300)}"
            ) from None
        return self._register(manifest, obj, module_name, (str(root),))

    def _import(self, manifest: Manifest, root: Path, module_name: str) -> Any:
        init = root / "__init__.py"
        # Submodules of the plugin are found through this finder alone: .py source only.
        sys.path_importer_cache[str(root)] = _source_only_finder(str(root))
        if init.is_file():
            spec = importlib.util.spec_from_file_location(
                module_name,
                init,
                loader=_SourceOnlyLoader(module_name, str(init)),
                submodule_search_locations=[str(root)],
            )
        else:  # no __init__.py: an empty package over the folder
            spec = importlib.machinery.ModuleSpec(module_name, None, is_package=True)
            spec.submodule_search_locations = [str(root)]
        if spec is None:
            raise PluginLoadError(manifest.plugin_id, f"cannot import the package at {root}")
        package = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = package
        if spec.loader is not None:
            spec.loader.exec_module(package)
        entry = (
            package
            if manifest.entry_module == "__init__"
            else importlib.import_module(f"{module_name}.{manifest.entry_module}")
        )
        return self._plugin_object(manifest, entry)

    def _plugin_object(self, manifest: Manifest, entry: types.ModuleType) -> Any:
        if manifest.plugin_class is None:
            return entry
        cls = getattr(entry, manifest.plugin_class, None)
        if cls is None or not inspect.isclass(cls):
            raise ManifestError(
                "plugin_class",
                f"{manifest.plugin_class!r} is not a class in {manifest.entry_module}.py",
            )
        return cls()

    def load_object(self, manifest: Manifest, obj: Any) -> LoadedPlugin:
        """Register an already-imported plugin object (entry-point plugins, tests)."""
        check_python(manifest)
        if inspect.isclass(obj):
            obj = obj()
        module = obj if inspect.ismodule(obj) else inspect.getmodule(obj)
        file = getattr(module, "__file__", None)
        roots = (os.path.dirname(os.path.realpath(file)),) if file else ()
        return self._register(manifest, obj, None, roots)

    def _register(
        self, manifest: Manifest, obj: Any, module_name: str | None, roots: tuple[str, ...]
    ) -> LoadedPlugin:
        plugin_id = manifest.plugin_id
        try:
            impls = _find_impls(self.pm, obj)
            unknown = sorted(set(impls) - set(HOOK_NAMES))
            if unknown:
                raise ManifestError(
                    "hooks",
                    f"{manifest.entry_module}.py implements {', '.join(unknown)}, which is not a hook "
                    f"(hooks: {', '.join(HOOK_NAMES)})",
                )
            for hook, fn in impls.items():
                allowed = _spec_argnames(self.pm, hook)
                extra = [a for a in _impl_argnames(fn) if a not in allowed]
                if extra:
                    raise PluginLoadError(
                        plugin_id,
                        f"{hook}() takes {', '.join(extra)}, which the hook does not provide "
                        f"(it provides: {', '.join(allowed)})",
                    )
            if plugin_id in self.loaded:
                self.unload(plugin_id)
            try:
                self.pm.register(obj, name=plugin_id)
            except pluggy.PluginValidationError as exc:
                raise PluginLoadError(plugin_id, " ".join(str(exc).split())) from None
        except BaseException:
            if module_name:
                _drop_modules(module_name)
            raise
        loaded = LoadedPlugin(
            plugin_id=plugin_id,
            manifest=manifest,
            obj=obj,
            module_name=module_name,
            hooks={h: HookCall(fn, _impl_argnames(fn)) for h, fn in impls.items()},
            roots=roots,
        )
        self.loaded[plugin_id] = loaded
        return loaded

    # -- unloading --------------------------------------------------------------------------

    def unload(self, plugin_id: str) -> None:
        """Unregister the plugin and forget every module of its package."""
        loaded = self.loaded.pop(plugin_id, None)
        if loaded is None:
            return
        if self.pm.get_plugin(plugin_id) is not None:
            self.pm.unregister(name=plugin_id)
        if loaded.module_name:
            _drop_modules(loaded.module_name)
            for root in loaded.roots:
                sys.path_importer_cache.pop(root, None)

    def unload_all(self) -> None:
        for plugin_id in list(self.loaded):
            self.unload(plugin_id)


# -- pip-installed plugins ------------------------------------------------------------------


@dataclass(frozen=True)
class EntryPointPlugin:
    """A plugin found in the ``services_ai.plugins`` entry-point group."""

    name: str
    value: str
    distribution: str | None
    manifest: Manifest
    obj: Any


def _manifest_near(obj: Any) -> Manifest:
    module = obj if inspect.ismodule(obj) else inspect.getmodule(obj)
    raw = getattr(module, "MANIFEST", None)
    if isinstance(raw, dict):
        return parse_manifest(raw, "MANIFEST")
    path = Path(getattr(module, "__file__", "") or "")
    for folder in [path.parent, *path.parent.parents][:3]:
        candidate = folder / "manifest.json"
        if candidate.is_file():
            return parse_manifest(candidate.read_bytes())
    raise ContractError("manifest.json", [])


def discover_entry_points() -> tuple[list[EntryPointPlugin], list[str]]:
    """Plugins pip installed, and one line per entry point that failed to load.

    One broken distribution never stops the others from being found.
    """
    found: list[EntryPointPlugin] = []
    problems: list[str] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        try:
            obj = ep.load()
            manifest = _manifest_near(obj)
        except ContractError as exc:
            reason = str(exc) if exc.errors else "no manifest.json beside it and no MANIFEST dict"
            problems.append(f"entry point {ep.name} ({ep.value}): {reason}")
            continue
        except BaseException as exc:
            problems.append(f"entry point {ep.name} ({ep.value}): {one_line(exc, 300)}")
            continue
        found.append(EntryPointPlugin(ep.name, ep.value, dist, manifest, obj))
    return found, problems


def manifest_info(manifest: Manifest) -> dict[str, Any]:
    """``plugin_info`` as ``plugin_installed`` receives it (plain JSON)."""
    info: dict[str, Any] = json.loads(manifest.model_dump_json(by_alias=True, exclude_none=True))
    return info


def entry_point_object(value: str) -> Any:
    """Load ``module:attribute`` of a pip-installed plugin (this imports its code)."""
    return importlib.metadata.EntryPoint(name="plugin", value=value, group=ENTRY_POINT_GROUP).load()
