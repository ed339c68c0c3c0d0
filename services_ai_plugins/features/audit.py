"""The audit log: every change an administrator (or the host itself) made, newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import AuditEntry

__all__ = ["AuditService"]


class AuditService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def recent(
        self, limit: int = 100, plugin_id: str | None = None, before: int | None = None
    ) -> list[dict[str, Any]]:
        """Entries newest first; ``before`` (an entry id) pages back."""
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if plugin_id:
            stmt = stmt.where(AuditEntry.plugin_id == plugin_id)
        if before is not None:
            stmt = stmt.where(AuditEntry.id < before)
        with self.db.session() as s:
            return [
                {
                    "id": e.id,
                    "at": e.at.isoformat(),
                    "actor": e.actor,
                    "action": e.action,
                    "plugin_id": e.plugin_id,
                    "detail": e.detail,
                }
                for e in s.scalars(stmt)
            ]
