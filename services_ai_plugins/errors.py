"""One error hierarchy for the host. Each error carries its data; the CLI and the web layer turn
it into a one-line message or a response in one place each."""

from __future__ import annotations

from schemas.errors import ContractError, FieldError


class ServicesAIError(Exception):
    """Base of every error the host raises on purpose. ``str(err)`` is one actionable line."""

    #: Exit status the CLI uses for this kind of error.
    exit_code = 1


class ConfigError(ServicesAIError):
    """The environment is missing something or holds a bad value."""

    exit_code = 78  # EX_CONFIG


class SecretKeyError(ConfigError):
    """``SERVICES_AI_SECRET_KEY`` is missing or cannot decrypt what is stored."""


class ManifestError(ServicesAIError):
    """The manifest breaks its contract or disagrees with the plugin's code."""

    exit_code = 65  # EX_DATAERR

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

    exit_code = 65

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
    exit_code = 4

    def __init__(self, plugin_id: str) -> None:
        super().__init__(plugin_id, "is not installed (see: services-ai plugin list)")


class PluginExistsError(PluginError):
    exit_code = 3

    def __init__(self, plugin_id: str, version: str) -> None:
        super().__init__(
            plugin_id,
            f"version {version} is already installed (use: services-ai plugin upgrade {plugin_id} PATH)",
        )


class PluginStateError(PluginError):
    """The operation does not fit the plugin's state (e.g. rollback with no earlier version)."""

    exit_code = 3


class PluginLoadError(PluginError):
    """The plugin's code failed to import, register, or match its manifest."""

    exit_code = 65


class PermissionDeniedError(PluginError):
    """A permission the plugin may not be granted, or lacks for what was asked."""

    exit_code = 3

    def __init__(self, plugin_id: str, permission: str, reason: str) -> None:
        self.permission = permission
        super().__init__(plugin_id, reason)


class SettingsError(PluginError):
    """One or more setting values were refused; nothing was written."""

    exit_code = 65

    def __init__(self, plugin_id: str, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__(plugin_id, "; ".join(f"setting {e}" for e in errors))


class EventError(ServicesAIError):
    """An event broke its contract."""

    exit_code = 65

    def __init__(self, exc: ContractError) -> None:
        self.errors = exc.errors
        super().__init__(str(exc))


class NotFoundError(ServicesAIError):
    """A record asked for by id does not exist."""

    exit_code = 4


class TransientError(ServicesAIError):
    """A failure worth retrying: the broker or the database is unreachable for now.

    Plugins may raise it too, to ask for their call to be retried later with backoff.
    """

    exit_code = 75  # EX_TEMPFAIL


class BrokerUnavailableError(TransientError):
    """The broker did not accept the message after every retry."""
