"""Services AI plugins: the plugin host of the Services AI platform.

Plugin authors need only ``hookimpl``::

    from services_ai_plugins import hookimpl

    @hookimpl
    def lead_created(lead, context):
        return {"status": "success"}
"""

from services_ai_plugins.errors import (
    ArchiveError,
    ManifestError,
    PermissionDeniedError,
    PluginLoadError,
    ServicesAIError,
    SettingsError,
    TransientError,
)
from services_ai_plugins.hookspecs import PROJECT_NAME, hookimpl, hookspec

__version__ = "0.1.0"

__all__ = [
    "PROJECT_NAME",
    "ArchiveError",
    "ManifestError",
    "PermissionDeniedError",
    "PluginLoadError",
    "ServicesAIError",
    "SettingsError",
    "TransientError",
    "__version__",
    "hookimpl",
    "hookspec",
]
