"""The ``context`` a hook receives: what it needs and nothing more.

The plugin's own identity and typed settings (secrets decrypted for it alone), the call's own
entries (event metadata, the idempotency key, the acting user, recent results, export records)
and a logger of its own whose lines never show the plugin's secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.manifest import Manifest
from services_ai_plugins.calling.redaction import RedactingFilter, Redactor

__all__ = ["LOGGER_PREFIX", "build_context", "plugin_identity", "plugin_logger"]

LOGGER_PREFIX = "services_ai.plugin"
#: Where a plugin's (redacted) log lines go on from its own logger.
_OUT = logging.getLogger("services_ai.plugins")


class _Forward(logging.Handler):
    """Redacts a plugin's log line, then hands it to the host's logging."""

    def __init__(self, plugin_id: str, redactor: Redactor) -> None:
        super().__init__()
        self.plugin_id = plugin_id
        self.addFilter(RedactingFilter(redactor))

    def emit(self, record: logging.LogRecord) -> None:
        if _OUT.isEnabledFor(record.levelno):
            _OUT.handle(record)


def plugin_logger(plugin_id: str, secrets: Iterable[str] = ()) -> logging.Logger:
    """``services_ai.plugin.<id>``: what it and its child loggers log reaches the host's
    handlers with the plugin's secret values redacted."""
    logger = logging.getLogger(f"{LOGGER_PREFIX}.{plugin_id}")
    for handler in list(logger.handlers):
        if isinstance(handler, _Forward):
            logger.removeHandler(handler)
    logger.addHandler(_Forward(plugin_id, Redactor(secrets)))
    logger.propagate = False
    return logger


def plugin_identity(manifest: Manifest) -> dict[str, Any]:
    """What ``context["plugin"]`` says about the plugin (README seed: the Plugin record)."""
    return {
        "id": manifest.plugin_id,
        "name": manifest.name,
        "version": manifest.version,
        "author": manifest.author,
    }


def build_context(
    manifest: Manifest,
    settings: Mapping[str, Any],
    logger: logging.Logger,
    *,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A fresh context dict for one call (a plugin that mutates it changes nothing else)."""
    context: dict[str, Any] = {
        "plugin_id": manifest.plugin_id,
        "plugin": plugin_identity(manifest),
        "settings": dict(settings),
        "logger": logger,
        "user": None,
        "request": None,
    }
    if extra:
        context.update(extra)
    return context
