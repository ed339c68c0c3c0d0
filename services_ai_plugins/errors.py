"""One error hierarchy for the host. Each error carries its data and says what is wrong in
one line, in words that suit every caller; the CLI (``cli/errors.py``) and the web layer each
map an error class to an exit status or an HTTP status, and add their own hint, in one table.
"""

from __future__ import annotations

from schemas.errors import ContractError, FieldError

__all__ = [
    "AccessDeniedError",
    "AlreadyExistsError",
    "ArchiveError",
    "AuthenticationError",
    "BrokerUnavailableError",
    "ConfigError",
    "EventError",
    "InputError",
    "ManifestError",
    "MissingSettingsError",
    "NotFoundError",
    "PermissionDeniedError",
    "PluginError",
    "PluginExistsError",
    "PluginLoadError",
    "PluginNotFoundError",
    "PluginStateError",
    "RateLimitedError",
    "SecretKeyError",
    "ServicesAIError",
    "SettingsError",
    "TransientError",
    "one_line",
]

MAX_LINE = 500


def one_line(exc: BaseException, limit: int = MAX_LINE) -> str:
    """The one error-text rule: ``Type: message`` on one line, white space folded, capped.

    Redaction is applied by whoever knows what to redact (``calling.redaction``)."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


class ServicesAIError(Exception):
    """Base of every error the host raises on purpose. ``str(err)`` is one actionable line."""


class ConfigError(ServicesAIError):
    """The environment is missing something or holds a bad value."""


class SecretKeyError(ConfigError):
    """``SERVICES_AI_SECRET_KEY`` is missing or cannot decrypt what is stored."""


class InputError(ServicesAIError):
    """A value given by a person or a program is malformed (a date, a JSON document...)."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}" if what else reason)


class ManifestError(ServicesAIError):
    """The manifest breaks its contract or disagrees with the plugin's code."""

    def __init__(self, field: str, reason: str, errors: list[FieldError] | None = None) -> None:
        self.field = field
        self.reason = reason
        self.errors = errors or [FieldError(field, reason)]
        super().__init__("manifest.json: " + "; ".join(str(e) for e in self.errors))

    @classmethod
    def from_contract(cls, exc: ContractError) -> ManifestError:
        first = exc.errors[0] if exc.errors else FieldError("", "invalid")
        return cls(first.field, first.reason, exc.errors)


class ArchiveError(ServicesAIError):
    """A plugin archive or folder is unsafe or incomplete; nothing of it was kept."""

    def __init__(self, reason: str, member: str | None = None) -> None:
        self.reason = reason
        self.member = member
        super().__init__(f"{reason}: {member!r}" if member is not None else reason)


class PluginError(ServicesAIError):
    """Something about one plugin; ``plugin_id`` says which."""

    def __init__(self, plugin_id: str, reason: str) -> None:
        self.plugin_id = plugin_id
        self.reason = reason
        super().__init__(f"plugin {plugin_id}: {reason}")


class PluginNotFoundError(PluginError):
    def __init__(self, plugin_id: str) -> None:
        super().__init__(plugin_id, "is not installed")


class PluginExistsError(PluginError):
    def __init__(self, plugin_id: str, version: str) -> None:
        self.version = version
        super().__init__(plugin_id, f"version {version} is already installed")


class PluginStateError(PluginError):
    """The operation does not fit the plugin's state (e.g. rollback with no earlier version)."""


class MissingSettingsError(PluginStateError):
    """The plugin cannot be enabled until its required settings are set."""

    def __init__(self, plugin_id: str, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(plugin_id, f"cannot be enabled: required setting {', '.join(missing)} is not set")


class PluginLoadError(PluginError):
    """The plugin's code failed to import, register, or match its manifest."""


class PermissionDeniedError(PluginError):
    """A permission the plugin may not be granted, or lacks for what was asked."""

    def __init__(self, plugin_id: str, permission: str, reason: str) -> None:
        self.permission = permission
        super().__init__(plugin_id, reason)


class SettingsError(PluginError):
    """One or more setting values were refused; nothing was written."""

    def __init__(self, plugin_id: str, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__(plugin_id, "; ".join(f"setting {e}" for e in errors))


class EventError(ServicesAIError):
    """An event broke its contract."""

    def __init__(self, exc: ContractError) -> None:
        self.errors = exc.errors
        super().__init__(str(exc))


class NotFoundError(ServicesAIError):
    """A record asked for by id does not exist."""

    def __init__(self, kind: str, key: object, reason: str = "not found") -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key} {reason}")


class AlreadyExistsError(ServicesAIError):
    """A record with this name exists already (a user, say)."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key} exists already")


class AuthenticationError(ServicesAIError):
    """No credentials, or wrong ones. The words never say which part was wrong."""


class AccessDeniedError(ServicesAIError):
    """The caller is known but may not do this (a token without the scope, a viewer)."""

    def __init__(self, needed: str, held: str) -> None:
        self.needed = needed
        self.held = held
        super().__init__(f"this needs {needed}; the credentials used have {held}")


class RateLimitedError(ServicesAIError):
    """Too many failed attempts; try again after ``retry_after`` seconds."""

    def __init__(self, what: str, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed {what}; try again in {retry_after} s")


class TransientError(ServicesAIError):
    """A failure worth retrying: the broker or the database is unreachable for now.

    Plugins may raise it too: the call is tried again later, with backoff, up to
    ``SERVICES_AI_EVENT_MAX_ATTEMPTS`` times, then stored as an error.
    """


class BrokerUnavailableError(TransientError):
    """The broker did not accept the message after every retry."""
