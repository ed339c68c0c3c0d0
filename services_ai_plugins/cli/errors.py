"""How the host's errors reach a person at the command line: one table, error class -> exit
status and the hint worth adding. The services' errors say what is wrong; this says what to
type next. (The web app has its own table: error class -> HTTP status.)"""

from __future__ import annotations

from collections.abc import Callable

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
    SecretKeyError,
    ServicesAIError,
    SettingsError,
    TransientError,
)

__all__ = ["EX_SOFTWARE", "EX_USAGE", "exit_status", "message"]

EX_USAGE = 2  # click's own, for a command typed wrong
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78
EX_STATE = 3
EX_NOT_FOUND = 4

Hint = Callable[[ServicesAIError], str | None]


def _missing_settings(err: ServicesAIError) -> str | None:
    assert isinstance(err, MissingSettingsError)
    return f"services-ai plugin config set {err.plugin_id} {err.missing[0]} VALUE"


def _exists(err: ServicesAIError) -> str | None:
    assert isinstance(err, PluginExistsError)
    return f"to replace it: services-ai plugin upgrade {err.plugin_id} PATH"


def _no_key(err: ServicesAIError) -> str | None:
    return "make a key with: services-ai secret-key"


# Most specific first: the first class an error is an instance of decides.
TABLE: list[tuple[type[ServicesAIError], int, Hint | None]] = [
    (MissingSettingsError, EX_STATE, _missing_settings),
    (PluginNotFoundError, EX_NOT_FOUND, lambda _e: "see: services-ai plugin list"),
    (PluginExistsError, EX_STATE, _exists),
    (PermissionDeniedError, EX_STATE, None),
    (SettingsError, EX_DATAERR, None),
    (PluginLoadError, EX_DATAERR, None),
    (PluginStateError, EX_STATE, None),
    (ManifestError, EX_DATAERR, None),
    (ArchiveError, EX_DATAERR, None),
    (EventError, EX_DATAERR, None),
    (InputError, EX_DATAERR, None),
    (NotFoundError, EX_NOT_FOUND, None),
    (AlreadyExistsError, EX_STATE, None),
    (AuthenticationError, EX_NOPERM, None),
    (AccessDeniedError, EX_NOPERM, None),
    (RateLimitedError, EX_TEMPFAIL, None),
    (SecretKeyError, EX_CONFIG, _no_key),
    (ConfigError, EX_CONFIG, None),
    (BrokerUnavailableError, EX_TEMPFAIL, None),
    (TransientError, EX_TEMPFAIL, None),
    (ServicesAIError, 1, None),
]


def _row(err: ServicesAIError) -> tuple[int, Hint | None]:
    for cls, code, hint in TABLE:
        if isinstance(err, cls):
            return code, hint
    return 1, None  # pragma: no cover - ServicesAIError closes the table


def exit_status(err: ServicesAIError) -> int:
    return _row(err)[0]


def message(err: ServicesAIError) -> str:
    """The one line a person reads: what is wrong, then what to do where there is a hint."""
    _code, hint = _row(err)
    extra = hint(err) if hint is not None else None
    return f"{err} ({extra})" if extra else str(err)
