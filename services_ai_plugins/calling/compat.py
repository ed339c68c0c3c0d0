"""Seed-style imports, so plugins written for either seed run unchanged.

The README seed's plugins do ``from plugins.hooks import hookimpl``; the plan seed's do
``from services_ai.plugins import hookimpl``. Neither top-level name belongs to this project, so
instead of installing packages called ``plugins`` and ``services_ai`` into site-packages (and
shadowing whatever else has those names), a finder placed *last* on ``sys.meta_path`` answers for
exactly these four module names when nothing else on the path does.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

from services_ai_plugins import hookspecs

ALIASES = ("plugins", "plugins.hooks", "services_ai", "services_ai.plugins")
_PACKAGES = {"plugins", "services_ai"}


class _SeedAliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__ in _PACKAGES:
            module.__path__ = []  # a package with no files; its children come from this finder
        else:
            module.hookimpl = hookspecs.hookimpl  # type: ignore[attr-defined]
            module.hookspec = hookspecs.hookspec  # type: ignore[attr-defined]
            module.__all__ = ["hookimpl", "hookspec"]  # type: ignore[attr-defined]


class SeedAliasFinder(importlib.abc.MetaPathFinder):
    """Provides ``plugins.hooks`` and ``services_ai.plugins`` when nothing else does."""

    _loader = _SeedAliasLoader()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self._loader, is_package=fullname in _PACKAGES)


def install() -> None:
    """Put the alias finder at the end of ``sys.meta_path`` (once)."""
    if not any(isinstance(f, SeedAliasFinder) for f in sys.meta_path):
        sys.meta_path.append(SeedAliasFinder())
