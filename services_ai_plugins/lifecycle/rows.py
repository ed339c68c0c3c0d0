"""The registry's rows: reading and changing them inside one session (one transaction).

Only :mod:`services_ai_plugins.lifecycle.registry` calls these; they hold no rule of their own
beyond keeping the rows consistent (permission rows follow the manifest, settings that no
longer fit are dropped, every change is audited and bumps the registry revision).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from schemas.manifest import Manifest, normalised_id, parse_manifest
from services_ai_plugins.calling.loader import manifest_info
from services_ai_plugins.calling.permissions import PERMISSION_DESCRIPTIONS
from services_ai_plugins.errors import PluginNotFoundError, PluginStateError
from services_ai_plugins.infra.models import (
    AuditEntry,
    Plugin,
    PluginPermission,
    PluginProblem,
    PluginVersion,
    RegistryState,
    utcnow,
)
from services_ai_plugins.lifecycle.settings import StoredSetting, carry_over, display_values, missing_required
from services_ai_plugins.lifecycle.views import PluginView, VersionView

__all__ = [
    "audit",
    "bump",
    "check_distinct",
    "current_version",
    "get_plugin",
    "manifest_of",
    "new_plugin",
    "new_version",
    "plugin_view",
    "stored_settings",
    "switch_version",
    "sync_permissions",
]


def get_plugin(s: Session, plugin_id: str, lock: bool = False) -> Plugin:
    stmt = select(Plugin).where(Plugin.id == plugin_id)
    if lock:
        stmt = stmt.with_for_update()
    plugin = s.scalars(stmt).first()
    if plugin is None:
        raise PluginNotFoundError(plugin_id)
    return plugin


def current_version(s: Session, plugin: Plugin) -> PluginVersion:
    version = s.scalars(
        select(PluginVersion).where(
            PluginVersion.plugin_id == plugin.id, PluginVersion.version == plugin.version
        )
    ).first()
    if version is None:  # pragma: no cover - the registry never leaves it missing
        raise PluginStateError(plugin.id, f"its current version {plugin.version} is missing")
    return version


def manifest_of(s: Session, plugin: Plugin) -> Manifest:
    return parse_manifest(current_version(s, plugin).manifest, "stored manifest")


def stored_settings(plugin: Plugin) -> dict[str, StoredSetting]:
    return {r.name: StoredSetting(r.value, r.ciphertext) for r in plugin.settings}


def _key(text: str) -> str:
    return normalised_id("-".join(text.split()))


def check_distinct(s: Session, manifest: Manifest) -> None:
    """A new plugin must not read as an installed one: its id or name, normalised (case, width,
    white space, ``-``/``_`` runs), is neither an installed plugin's id nor its name."""
    mine = {_key(manifest.plugin_id), _key(manifest.name)}
    for other_id, other_name in s.execute(select(Plugin.id, Plugin.name)):
        if other_id != manifest.plugin_id and mine & {_key(other_id), _key(other_name)}:
            raise PluginStateError(
                manifest.plugin_id,
                f"its id or name reads as the installed plugin {other_id}'s; choose another",
            )


def new_plugin(manifest: Manifest, source: str) -> Plugin:
    now = utcnow()
    return Plugin(
        id=manifest.plugin_id,
        name=manifest.name,
        description=manifest.description,
        author=manifest.author,
        email=manifest.email,
        version=manifest.version,
        source=source,
        enabled=False,
        installed_at=now,
        updated_at=now,
        permissions=[],
        settings=[],
    )


def new_version(
    manifest: Manifest,
    sha256: str,
    actor: str | None,
    *,
    archive: bytes | None = None,
    digest: str | None = None,
    entry_point: str | None = None,
) -> PluginVersion:
    return PluginVersion(
        plugin_id=manifest.plugin_id,
        version=manifest.version,
        manifest=manifest_info(manifest),
        sha256=sha256,
        tree_sha256=digest,
        size=len(archive or b""),
        archive=archive,
        entry_point=entry_point,
        uploaded_at=utcnow(),
        uploaded_by=actor,
    )


def sync_permissions(s: Session, plugin: Plugin, manifest: Manifest, actor: str | None) -> None:
    """Rows for exactly the declared permissions: kept grants stay, new ones start off."""
    current = {p.name: p for p in plugin.permissions}
    declared = {p.name: p for p in manifest.permissions}
    for name, row in current.items():
        if name not in declared:
            plugin.permissions.remove(row)
            s.delete(row)
    for name, spec in declared.items():
        kept = current.get(name)
        description = spec.description or PERMISSION_DESCRIPTIONS.get(name, "")
        if kept is None:
            plugin.permissions.append(
                PluginPermission(
                    plugin_id=plugin.id,
                    name=name,
                    description=description,
                    granted=False,
                    changed_at=utcnow(),
                    changed_by=actor,
                )
            )
        else:
            kept.description = description


def switch_version(s: Session, plugin: Plugin, manifest: Manifest, actor: str | None) -> list[str]:
    """Point the plugin at another version: identity, permissions and settings follow."""
    warnings: list[str] = []
    before = {p.name for p in plugin.permissions}
    plugin.version = manifest.version
    plugin.name = manifest.name
    plugin.description = manifest.description
    plugin.author = manifest.author
    plugin.email = manifest.email
    plugin.updated_at = utcnow()
    sync_permissions(s, plugin, manifest, actor)
    added = sorted({p.name for p in manifest.permissions} - before)
    if added:
        warnings.append(
            f"version {manifest.version} requests {', '.join(added)}: not granted until you grant it"
        )
    kept, notes = carry_over(stored_settings(plugin), manifest)
    warnings += notes
    for row in list(plugin.settings):
        if row.name not in kept:
            plugin.settings.remove(row)
            s.delete(row)
    missing = missing_required(manifest, kept)
    if plugin.enabled and missing:
        plugin.enabled = False
        plugin.disabled_reason = (
            f"version {manifest.version} needs setting {', '.join(missing)}; set it, then enable"
        )
        warnings.append(f"disabled: {plugin.disabled_reason}")
    return warnings


def audit(s: Session, actor: str | None, action: str, plugin_id: str | None, **detail: Any) -> None:
    s.add(AuditEntry(at=utcnow(), actor=actor, action=action, plugin_id=plugin_id, detail=detail))


def bump(s: Session) -> None:
    """Every registry change moves the revision: each worker process catches up within a poll."""
    s.execute(
        update(RegistryState)
        .where(RegistryState.id == 1)
        .values(revision=RegistryState.revision + 1, changed_at=utcnow())
    )


def plugin_view(s: Session, plugin: Plugin, detail: bool = False) -> PluginView:
    manifest = manifest_of(s, plugin)
    view = PluginView(
        id=plugin.id,
        name=plugin.name,
        version=plugin.version,
        description=plugin.description,
        author=plugin.author,
        email=plugin.email,
        enabled=plugin.enabled,
        source=plugin.source,
        permissions={p.name: p.granted for p in plugin.permissions},
        hooks=list(manifest.hooks),
        installed_at=plugin.installed_at,
        updated_at=plugin.updated_at,
        disabled_reason=plugin.disabled_reason,
    )
    if not detail:
        return view
    view.settings = display_values(manifest, stored_settings(plugin))
    hosts = {p.name: list(p.hosts) for p in manifest.permissions}
    view.permission_details = [
        {
            "name": p.name,
            "description": p.description,
            "granted": p.granted,
            "changed_at": p.changed_at.isoformat(),
            "changed_by": p.changed_by,
            "hosts": hosts.get(p.name, []),
        }
        for p in plugin.permissions
    ]
    rows = s.scalars(
        select(PluginVersion).where(PluginVersion.plugin_id == plugin.id).order_by(PluginVersion.id)
    ).all()
    view.versions = [
        VersionView(
            version=v.version,
            sha256=v.sha256,
            size=v.size,
            uploaded_at=v.uploaded_at,
            uploaded_by=v.uploaded_by,
            current=v.version == plugin.version,
        )
        for v in rows
    ]
    problems = s.scalars(select(PluginProblem).where(PluginProblem.plugin_id == plugin.id)).all()
    view.problems = {
        p.kind: {"reason": p.reason, "count": p.count, "last_seen": p.last_seen.isoformat()} for p in problems
    }
    return view
