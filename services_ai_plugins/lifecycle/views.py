"""What the registry returns: plugins as people and scripts see them (the CLI prints these, the
API returns them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

__all__ = ["ChangeReport", "PluginView", "VersionView"]


class VersionView(BaseModel):
    version: str
    sha256: str
    size: int
    uploaded_at: datetime
    uploaded_by: str | None
    current: bool


class PluginView(BaseModel):
    """A plugin. ``permissions`` maps name -> granted; the detail fields are filled by ``show``."""

    id: str
    name: str
    version: str
    description: str
    author: str
    email: str
    enabled: bool
    source: str
    permissions: dict[str, bool]
    hooks: list[str]
    installed_at: datetime
    updated_at: datetime
    disabled_reason: str | None = None
    settings: list[dict[str, Any]] | None = None
    versions: list[VersionView] | None = None
    permission_details: list[dict[str, Any]] | None = None
    #: What workers found wrong with it (``{kind: {reason, count, last_seen}}``).
    problems: dict[str, dict[str, Any]] | None = None


@dataclass
class ChangeReport:
    """The outcome of a write: the plugin now, plus what the admin should be told."""

    plugin: PluginView
    warnings: list[str] = field(default_factory=list)
