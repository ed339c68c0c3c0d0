"""How the host's errors reach an HTTP client: one table, error class -> status. The service
says what is wrong; this picks the status. API requests get JSON
``{"error": TYPE, "detail": LINE, "fields": [{"field", "reason"}]}``; pages get the same
words in an HTML page (see ``pages/``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

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

__all__ = ["ERROR_RESPONSES", "TABLE", "ErrorBody", "body", "headers", "status_of"]

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


class FieldProblem(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    """Every refusal of the API: what kind, one line a person can act on, the fields at fault."""

    error: str
    detail: str
    fields: list[FieldProblem]


# Documented on every API route (the OpenAPI document says what a client may get back).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": words}
    for status, words in [
        (400, "the body could not be parsed (not JSON, or a broken multipart form)"),
        (401, "no credentials, or wrong ones"),
        (403, "the token's scope (or the user's role) does not allow it"),
        (404, "no such plugin, event, export, permission or route"),
        (409, "not possible in the plugin's state (already installed, missing settings...)"),
        (413, "the request body is over the limit"),
        (422, "the request or its content is refused: the detail and fields say why"),
        (429, "too many failed attempts; see Retry-After"),
        (503, "the broker or the database is unavailable, or the deployment lacks a key; see Retry-After"),
    ]
}
