"""What several command modules share."""

from __future__ import annotations

import getpass
import os

from services_ai_plugins.host import Host


def host_from_env(ready: bool = True) -> Host:
    """A host from the environment; ``ready`` checks (or, for the SQLite default, creates) the
    schema."""
    host = Host()
    return host.ready() if ready else host


def actor() -> str:
    """Who is acting, for the audit log: ``SERVICES_AI_ACTOR``, else the OS user."""
    explicit = os.environ.get("SERVICES_AI_ACTOR")
    if explicit:
        return explicit
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
