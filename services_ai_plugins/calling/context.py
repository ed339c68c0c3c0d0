"""The ``context`` a hook receives: what it needs and nothing more.

The plugin's own identity and typed settings (secrets decrypted for it alone), the event's
metadata, a logger of its own that never prints its secrets, and the acting user if any.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.manifest import Manifest

REDACTED = "[secret]"


class _RedactSecrets(logging.Filter):
    """Replaces the plugin's secret values in anything it logs."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            for secret in self.secrets:
                text = text.replace(secret, REDACTED)
            record.msg, record.args = text, None
        return True


def plugin_logger(plugin_id: str, secrets: Iterable[str] = ()) -> logging.Logger:
    """``services_ai.plugin.<id>``, with a filter that redacts the plugin's secrets."""
    logger = logging.getLogger(f"services_ai.plugin.{plugin_id}")
    for f in list(logger.filters):
        if isinstance(f, _RedactSecrets):
            logger.removeFilter(f)
    logger.addFilter(_RedactSecrets(secrets))
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
    event: Mapping[str, Any] | None = None,
    user: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A fresh context dict for one call (a plugin that mutates it changes nothing else)."""
    context: dict[str, Any] = {
        "plugin_id": manifest.plugin_id,
        "plugin": plugin_identity(manifest),
        "settings": dict(settings),
        "logger": logger,
        "user": user,
        "request": None,
    }
    if event is not None:
        context["event"] = dict(event)
    if extra:
        context.update(extra)
    return context
