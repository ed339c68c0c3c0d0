"""How the host's errors reach an HTTP client: one table, error class -> status. The service
says what is wrong; this picks the status. API requests get JSON
``{"error": TYPE, "detail": LINE, "fields": [{"field", "reason"}]}``; pages get the same
words in an HTML page (see ``pages/``)."""

from __future__ import annotations

from typing import Any

from services_ai_plugins.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    ArchiveError,
    AuthenticationError,
    BrokerUnavailableError,
    ConfigError,
    EventError,
    InputError,
    ManifestError,
    MissingSettingsError,
    NotFoundError,
    PermissionDeniedError,
    PluginExistsError,
    PluginLoadError,
    PluginNotFoundError,
    PluginStateError,
    RateLimitedError,
    ServicesAIError,
    SettingsError,
    TransientError,
)
from services_ai_plugins.web.security import CsrfError

__all__ = ["TABLE", "body", "headers", "status_of"]

# Most specific first: the first class an error is an instance of decides.
TABLE: list[tuple[type[ServicesAIError], int]] = [
    (AuthenticationError, 401),
    (AccessDeniedError, 403),
    (CsrfError, 403),
    (RateLimitedError, 429),
    (MissingSettingsError, 409),
    (PluginNotFoundError, 404),
    (PluginExistsError, 409),
    # A permission the URL names that the plugin does not declare (or that does not exist).
    (PermissionDeniedError, 404),
    (SettingsError, 422),
    (PluginLoadError, 422),
    (PluginStateError, 409),
    (ManifestError, 422),
    (ArchiveError, 422),
    (EventError, 422),
    (InputError, 422),
    (NotFoundError, 404),
    (AlreadyExistsError, 409),
    # The deployment, not the request, is at fault: a missing secret key, a broker down.
    (ConfigError, 503),
    (BrokerUnavailableError, 503),
    (TransientError, 503),
    (ServicesAIError, 400),
]


def status_of(err: ServicesAIError) -> int:
    for cls, status in TABLE:
        if isinstance(err, cls):
            return status
    return 400  # pragma: no cover - ServicesAIError closes the table


def fields(err: ServicesAIError) -> list[dict[str, str]]:
    """The fields at fault, where the error knows them (settings, manifest, event)."""
    found = getattr(err, "errors", None)
    if isinstance(err, SettingsError | ManifestError | EventError) and found:
        return [{"field": e.field, "reason": e.reason} for e in found]
    if isinstance(err, InputError) and err.what:
        return [{"field": err.what, "reason": err.reason}]
    return []


def body(err: ServicesAIError) -> dict[str, Any]:
    return {"error": type(err).__name__, "detail": str(err), "fields": fields(err)}


def headers(err: ServicesAIError) -> dict[str, str]:
    if isinstance(err, AuthenticationError):
        return {"WWW-Authenticate": 'Bearer realm="services-ai"'}
    if isinstance(err, RateLimitedError):
        return {"Retry-After": str(err.retry_after)}
    if isinstance(err, TransientError):
        return {"Retry-After": "5"}
    return {}
