"""The plugin registry: every rule of the plugin lifecycle, in one service layer.

The CLI calls it, and so will the web app; neither holds a rule of its own. Each operation runs
in one database transaction and bumps the registry revision in it, so a failure part way leaves
the previous state intact and every worker sees a change as one step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from schemas.errors import ContractError, FieldError
from schemas.manifest import Manifest, parse_manifest, semver_key
from services_ai_plugins.calling.context import build_context, plugin_logger
from services_ai_plugins.calling.dispatch import Outcome, invoke
from services_ai_plugins.calling.loader import (
    LoadedPlugin,
    PluginLoader,
    discover_entry_points,
    manifest_info,
)
from services_ai_plugins.config import Config
from services_ai_plugins.errors import (
    ArchiveError,
    ManifestError,
    PermissionDeniedError,
    PluginExistsError,
    PluginLoadError,
    PluginNotFoundError,
    PluginStateError,
    SettingsError,
)
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import (
    AuditEntry,
    ExportRow,
    HookResult,
    Plugin,
    PluginPermission,
    PluginSetting,
    PluginVersion,
    RegistryState,
    utcnow,
)
from services_ai_plugins.lifecycle import archive
from services_ai_plugins.lifecycle.permissions import ALIASES, PERMISSION_DESCRIPTIONS
from services_ai_plugins.lifecycle.settings import (
    Keyring,
    SettingsUpdateError,
    StoredSetting,
    carry_over,
    display_values,
    missing_required,
    prepare_update,
    typed_values,
)

log = logging.getLogger(__name__)


# -- views (what the CLI prints and the API returns) ----------------------------------------


class VersionView(BaseModel):
    version: str
    sha256: str
    size: int
    uploaded_at: datetime
    uploaded_by: str | None
    current: bool


class PluginView(BaseModel):
    """A plugin as people and scripts see it. ``permissions`` maps name -> granted."""

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


@dataclass
class ChangeReport:
    """The outcome of a write: the plugin now, plus what the admin should be told."""

    plugin: PluginView
    warnings: list[str] = field(default_factory=list)


@dataclass
class Candidate:
    """A validated plugin, extracted into a staging folder, its code loaded once to check it."""

    manifest: Manifest
    archive_bytes: bytes
    sha256: str
    root: Path
    loaded: LoadedPlugin


# -- the service ----------------------------------------------------------------------------


class PluginRegistry:
    """Install, upgrade, roll back, enable, disable, permit, configure and remove plugins."""

    def __init__(self, config: Config, db: Database, keyring: Keyring) -> None:
        self.config = config
        self.db = db
        self.keyring = keyring
        self.limits = archive.ArchiveLimits(max_archive_bytes=config.max_archive_bytes)

    # -- reading ----------------------------------------------------------------------------

    def revision(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(RegistryState.revision).where(RegistryState.id == 1)) or 0)

    def plugins(self) -> list[PluginView]:
        with self.db.session() as s:
            rows = s.scalars(select(Plugin).order_by(Plugin.id)).all()
            return [self._view(s, p) for p in rows]

    def show(self, plugin_id: str) -> PluginView:
        with self.db.session() as s:
            plugin = self._get(s, plugin_id)
            return self._view(s, plugin, detail=True)

    def manifest(self, plugin_id: str) -> Manifest:
        with self.db.session() as s:
            return self._manifest(s, self._get(s, plugin_id))

    def get_settings(self, plugin_id: str) -> list[dict[str, Any]]:
        """Settings for display: secrets masked, never decrypted."""
        with self.db.session() as s:
            plugin = self._get(s, plugin_id)
            return display_values(self._manifest(s, plugin), self._stored(plugin))

    # -- installing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def candidate(self, path: Path) -> Iterator[Candidate]:
        """Validate a ZIP or folder: safe archive, valid manifest, code that loads and matches.

        Yields the candidate; its staging folder and loaded modules are removed on exit.
        """
        path = Path(path)
        if path.is_dir():
            data = archive.package_dir(path, self.limits)
        elif path.is_file():
            data = archive.read_archive_bytes(path, self.limits)
        else:
            raise ArchiveError("no such file or folder", str(path))
        staging = self._staging_dir()
        root = archive.extract_zip(data, staging, self.limits)
        loader = PluginLoader(import_time_limit=self.config.plugin_import_time_limit)
        try:
            manifest_path = root / "manifest.json"
            try:
                manifest = parse_manifest(manifest_path.read_bytes())
            except ContractError as exc:
                raise ManifestError.from_contract(exc) from None
            sha = archive.sha256_hex(data)
            loaded = loader.load_folder(manifest, root, tag=sha)
            yield Candidate(manifest, data, sha, root, loaded)
        finally:
            loader.unload_all()
            shutil.rmtree(root, ignore_errors=True)

    def validate(self, path: Path) -> Manifest:
        """``plugin validate``: every check of install, nothing stored."""
        with self.candidate(path) as cand:
            return cand.manifest

    def install(self, path: Path, actor: str | None = None) -> ChangeReport:
        """Install a plugin from a ZIP or a folder, disabled, with every permission off."""
        with self.candidate(path) as cand:
            plugin_id = cand.manifest.plugin_id
            warnings: list[str] = []
            with self.db.session() as s:
                existing = s.get(Plugin, plugin_id)
                if existing is not None:
                    raise PluginExistsError(plugin_id, existing.version)
                plugin = self._new_plugin(cand.manifest, source="archive")
                s.add(plugin)
                s.add(self._version_row(cand, actor))
                self._sync_permissions(s, plugin, cand.manifest, actor)
                s.flush()
                outcome = self._lifecycle(
                    cand.loaded,
                    "plugin_installed",
                    {"plugin_id": plugin_id, "plugin_info": manifest_info(cand.manifest)},
                    typed_values(plugin_id, cand.manifest, {}, self.keyring),  # the defaults
                    actor,
                )
                if outcome is not None and not outcome.ok:
                    # Raising rolls the whole install back.
                    raise PluginLoadError(plugin_id, f"plugin_installed hook failed: {outcome.error}")
                self._audit(s, actor, "install", plugin_id, version=cand.manifest.version, sha256=cand.sha256)
                self._bump(s)
            self._cache(cand)
            return ChangeReport(self.show(plugin_id), warnings)

    def upgrade(self, plugin_id: str, path: Path, actor: str | None = None) -> ChangeReport:
        """Replace the plugin's code with a newer version; settings and grants carry over."""
        with self.candidate(path) as cand:
            new = cand.manifest
            if new.plugin_id != plugin_id:
                raise PluginStateError(
                    plugin_id, f"the archive holds plugin {new.plugin_id}, not {plugin_id}"
                )
            with self.db.session() as s:
                plugin = self._get(s, plugin_id, lock=True)
                if plugin.source != "archive":
                    raise PluginStateError(plugin_id, "is pip-installed; upgrade it with pip")
                if semver_key(new.version) <= semver_key(plugin.version):
                    raise PluginStateError(
                        plugin_id,
                        f"version {new.version} is not newer than the installed {plugin.version}",
                    )
                if s.scalar(
                    select(PluginVersion.id).where(
                        PluginVersion.plugin_id == plugin_id, PluginVersion.version == new.version
                    )
                ):
                    raise PluginStateError(plugin_id, f"version {new.version} was uploaded before")
                s.add(self._version_row(cand, actor))
                warnings = self._switch_version(s, plugin, new, actor)
                self._audit(s, actor, "upgrade", plugin_id, version=new.version, sha256=cand.sha256)
                self._bump(s)
            self._cache(cand)
            return ChangeReport(self.show(plugin_id), warnings)

    def rollback(self, plugin_id: str, actor: str | None = None) -> ChangeReport:
        """Go back to the version installed before the current one (the current one is dropped)."""
        with self.db.session() as s:
            plugin = self._get(s, plugin_id, lock=True)
            versions = s.scalars(
                select(PluginVersion).where(PluginVersion.plugin_id == plugin_id).order_by(PluginVersion.id)
            ).all()
            current = next((v for v in versions if v.version == plugin.version), None)
            earlier = [v for v in versions if current is not None and v.id < current.id]
            if current is None or not earlier:
                raise PluginStateError(plugin_id, "has no earlier version to roll back to")
            target = earlier[-1]
            manifest = parse_manifest(target.manifest, "stored manifest")
            self._check_loads(s, target, manifest)
            warnings = self._switch_version(s, plugin, manifest, actor)
            s.delete(current)
            self._audit(s, actor, "rollback", plugin_id, version=target.version, left=current.version)
            self._bump(s)
        return ChangeReport(self.show(plugin_id), warnings)

    # -- state ------------------------------------------------------------------------------

    def enable(self, plugin_id: str, actor: str | None = None) -> ChangeReport:
        warnings: list[str] = []
        with self.db.session() as s:
            plugin = self._get(s, plugin_id, lock=True)
            manifest = self._manifest(s, plugin)
            missing = missing_required(manifest, self._stored(plugin))
            if missing:
                raise PluginStateError(
                    plugin_id,
                    f"cannot be enabled: required setting {', '.join(missing)} is not set "
                    f"(services-ai plugin config set {plugin_id} {missing[0]} VALUE)",
                )
            if plugin.enabled:
                return ChangeReport(self._view(s, plugin), ["already enabled"])
            with self._loaded(s, plugin) as loaded:
                outcome = self._lifecycle(
                    loaded, "plugin_enabled", {"plugin_id": plugin_id}, self._typed(plugin, manifest), actor
                )
            if outcome is not None and not outcome.ok:
                raise PluginLoadError(plugin_id, f"plugin_enabled hook failed: {outcome.error}")
            plugin.enabled = True
            plugin.disabled_reason = None
            if not any(p.granted for p in plugin.permissions) and plugin.permissions:
                warnings.append(
                    "no permission is granted yet, so it receives no events "
                    f"(services-ai plugin grant {plugin_id} PERMISSION)"
                )
            self._audit(s, actor, "enable", plugin_id)
            self._bump(s)
            return ChangeReport(self._view(s, plugin), warnings)

    def disable(self, plugin_id: str, actor: str | None = None, reason: str | None = None) -> ChangeReport:
        """Disable; the plugin's ``plugin_disabled`` hook failing never blocks this."""
        warnings: list[str] = []
        with self.db.session() as s:
            plugin = self._get(s, plugin_id, lock=True)
            if not plugin.enabled:
                return ChangeReport(self._view(s, plugin), ["already disabled"])
            warnings += self._best_effort_hook(s, plugin, "plugin_disabled", actor)
            plugin.enabled = False
            plugin.disabled_reason = reason
            self._audit(s, actor, "disable", plugin_id, reason=reason)
            self._bump(s)
            return ChangeReport(self._view(s, plugin), warnings)

    def grant(self, plugin_id: str, permission: str, actor: str | None = None) -> ChangeReport:
        return self._set_permission(plugin_id, permission, True, actor)

    def revoke(self, plugin_id: str, permission: str, actor: str | None = None) -> ChangeReport:
        return self._set_permission(plugin_id, permission, False, actor)

    def _set_permission(
        self, plugin_id: str, permission: str, granted: bool, actor: str | None
    ) -> ChangeReport:
        with self.db.session() as s:
            plugin = self._get(s, plugin_id, lock=True)
            row = self._permission_row(plugin, permission)
            if row.granted == granted:
                word = "granted" if granted else "not granted"
                return ChangeReport(self._view(s, plugin), [f"{row.name} was already {word}"])
            row.granted = granted
            row.changed_by = actor
            row.changed_at = utcnow()
            self._audit(s, actor, "grant" if granted else "revoke", plugin_id, permission=row.name)
            self._bump(s)
            return ChangeReport(self._view(s, plugin))

    def _permission_row(self, plugin: Plugin, permission: str) -> PluginPermission:
        if permission not in PERMISSION_DESCRIPTIONS:
            raise PermissionDeniedError(
                plugin.id,
                permission,
                f"{permission!r} is not a permission (known: {', '.join(PERMISSION_DESCRIPTIONS)})",
            )
        rows = {p.name: p for p in plugin.permissions}
        if permission in rows:
            return rows[permission]
        # Granting lead_access to a plugin that declared read_leads (its alias) grants read_leads.
        for alias, canonical in ALIASES.items():
            if permission == canonical and alias in rows:
                return rows[alias]
            if permission == alias and canonical in rows:
                return rows[canonical]
        declared = ", ".join(rows) or "none"
        raise PermissionDeniedError(
            plugin.id,
            permission,
            f"cannot be granted {permission}: its manifest does not declare it (declared: {declared})",
        )

    # -- settings ---------------------------------------------------------------------------

    def set_settings(
        self,
        plugin_id: str,
        values: Mapping[str, Any],
        actor: str | None = None,
        *,
        from_text: bool = False,
    ) -> ChangeReport:
        """Validate every value, then write them all in one transaction (or none)."""
        with self.db.session() as s:
            plugin = self._get(s, plugin_id, lock=True)
            manifest = self._manifest(s, plugin)
            stored = self._stored(plugin)
            try:
                changes = prepare_update(
                    plugin_id, manifest, stored, values, self.keyring, from_text=from_text
                )
            except SettingsUpdateError as exc:
                raise SettingsError(plugin_id, exc.errors) from None
            rows = {r.name: r for r in plugin.settings}
            for name, new in changes.items():
                row = rows.get(name)
                if new is None:
                    if row is not None:
                        s.delete(row)
                    continue
                if row is None:
                    row = PluginSetting(plugin_id=plugin_id, name=name)
                    s.add(row)
                row.value = new.value
                row.ciphertext = new.ciphertext
                row.updated_at = utcnow()
            secret_names = {sp.name for sp in manifest.settings if sp.is_secret}
            self._audit(
                s,
                actor,
                "configure",
                plugin_id,
                changed=sorted(changes),
                # Values are never audited for secrets; plain ones are useful history.
                values={k: v.value for k, v in changes.items() if v and k not in secret_names},
            )
            self._bump(s)
            s.flush()
            s.refresh(plugin)
            return ChangeReport(self._view(s, plugin, detail=True))

    def unset_setting(self, plugin_id: str, name: str, actor: str | None = None) -> ChangeReport:
        with self.db.session() as s:
            plugin = self._get(s, plugin_id, lock=True)
            manifest = self._manifest(s, plugin)
            spec = manifest.setting(name)
            if spec is None:
                raise SettingsError(plugin_id, [FieldError(name, "is not a setting of this plugin")])
            if spec.required and spec.default is None and plugin.enabled:
                raise SettingsError(plugin_id, [FieldError(name, "is required while the plugin is enabled")])
            s.execute(
                delete(PluginSetting).where(PluginSetting.plugin_id == plugin_id, PluginSetting.name == name)
            )
            self._audit(s, actor, "configure", plugin_id, unset=name)
            self._bump(s)
        return ChangeReport(self.show(plugin_id))

    def typed_settings(self, plugin_id: str) -> dict[str, Any]:
        """The plugin's own typed settings, secrets decrypted: for its context only."""
        with self.db.session() as s:
            plugin = self._get(s, plugin_id)
            return self._typed(plugin, self._manifest(s, plugin))

    # -- removing ---------------------------------------------------------------------------

    def uninstall(self, plugin_id: str, actor: str | None = None, purge: bool = False) -> ChangeReport:
        """Remove the plugin's rows and cached files; its ``plugin_uninstalled`` hook is
        called first, and its failing never blocks the uninstall. Its hook results and export
        rows are kept (history) unless ``purge``."""
        with self.db.session() as s:
            plugin = self._get(s, plugin_id, lock=True)
            view = self._view(s, plugin)
            warnings = self._best_effort_hook(s, plugin, "plugin_uninstalled", actor)
            shas = list(s.scalars(select(PluginVersion.sha256).where(PluginVersion.plugin_id == plugin_id)))
            if purge:
                s.execute(delete(HookResult).where(HookResult.plugin_id == plugin_id))
                s.execute(delete(ExportRow).where(ExportRow.plugin_id == plugin_id))
            s.delete(plugin)
            self._audit(s, actor, "uninstall", plugin_id, version=view.version, purged=purge)
            self._bump(s)
        for sha in shas:
            shutil.rmtree(self.config.cache_dir / sha, ignore_errors=True)
        view.enabled = False
        return ChangeReport(view, warnings)

    # -- pip-installed plugins ----------------------------------------------------------------

    def sync_entry_points(self, actor: str | None = None) -> tuple[list[str], list[str]]:
        """Register pip-installed plugins not yet in the registry (disabled, nothing granted).

        Returns the ids added and one line per problem (a broken distribution never stops
        the others).
        """
        found, problems = discover_entry_points()
        added: list[str] = []
        for ep in found:
            plugin_id = ep.manifest.plugin_id
            with self.db.session() as s:
                existing = s.get(Plugin, plugin_id)
                if existing is not None:
                    if existing.source != "entry_point":
                        problems.append(
                            f"entry point {ep.name}: id {plugin_id} is taken by an installed archive"
                        )
                    elif existing.version != ep.manifest.version:
                        # pip upgraded it: the registry follows, as an upgrade would.
                        s.add(self._entry_point_version(ep, actor))
                        self._switch_version(s, existing, ep.manifest, actor)
                        self._bump(s)
                    continue
            try:
                loader = PluginLoader()
                loader.load_object(ep.manifest, ep.obj)
                loader.unload_all()
            except (ManifestError, PluginLoadError) as exc:
                problems.append(f"entry point {ep.name}: {exc}")
                continue
            with self.db.session() as s:
                plugin = self._new_plugin(ep.manifest, source="entry_point")
                s.add(plugin)
                s.add(self._entry_point_version(ep, actor))
                self._sync_permissions(s, plugin, ep.manifest, actor)
                self._audit(s, actor, "discover", plugin_id, entry_point=ep.value)
                self._bump(s)
            added.append(plugin_id)
        return added, problems

    # -- code for a stored plugin -----------------------------------------------------------

    def materialise(self, s: Session, version: PluginVersion) -> Path:
        """The plugin's folder in the local cache, extracted from the database if missing."""
        target = self.config.cache_dir / version.sha256
        if (target / "manifest.json").is_file():
            return target
        data = version.archive
        if data is None:
            raise PluginLoadError(version.plugin_id, "has no stored archive")
        if archive.sha256_hex(data) != version.sha256:
            raise PluginLoadError(
                version.plugin_id, f"stored archive of {version.version} fails its sha256 check"
            )
        root = archive.extract_zip(data, self._staging_dir(), self.limits)
        try:
            os.rename(root, target)
        except OSError:
            # Another process materialised it first; theirs is identical.
            shutil.rmtree(root, ignore_errors=True)
        return target

    @contextlib.contextmanager
    def _loaded(self, s: Session, plugin: Plugin) -> Iterator[LoadedPlugin]:
        manifest = self._manifest(s, plugin)
        version = self._current_version(s, plugin)
        loader = PluginLoader(import_time_limit=self.config.plugin_import_time_limit)
        try:
            if plugin.source == "entry_point":
                yield loader.load_object(manifest, _entry_point_object(version.entry_point or ""))
            else:
                yield loader.load_folder(manifest, self.materialise(s, version), tag=version.sha256)
        finally:
            loader.unload_all()

    def load_plugin(self, plugin_id: str) -> contextlib.AbstractContextManager[LoadedPlugin]:
        """The plugin's code loaded in a private Pluggy manager (admin pages, tests)."""

        @contextlib.contextmanager
        def _cm() -> Iterator[LoadedPlugin]:
            with self.db.session() as s:
                plugin = self._get(s, plugin_id)
                with self._loaded(s, plugin) as loaded:
                    yield loaded

        return _cm()

    def render_settings_page(self, plugin_id: str, actor: str | None = None) -> Outcome | None:
        """Call the plugin's ``settings_page`` hook (admin only); HTML is sanitised by callers."""
        with self.db.session() as s:
            plugin = self._get(s, plugin_id)
            manifest = self._manifest(s, plugin)
            with self._loaded(s, plugin) as loaded:
                return self._lifecycle(
                    loaded, "settings_page", {"plugin_id": plugin_id}, self._typed(plugin, manifest), actor
                )

    # -- internals --------------------------------------------------------------------------

    def _staging_dir(self) -> Path:
        staging = self.config.cache_dir / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        return staging

    def _cache(self, cand: Candidate) -> None:
        """Keep the validated extraction as the cache entry for its sha256."""
        target = self.config.cache_dir / cand.sha256
        if (target / "manifest.json").is_file():
            return
        fresh = Path(tempfile.mkdtemp(dir=self._staging_dir(), prefix=".cache-"))
        try:
            shutil.copytree(cand.root, fresh, dirs_exist_ok=True)
            os.rename(fresh, target)
        except OSError:
            shutil.rmtree(fresh, ignore_errors=True)

    def _get(self, s: Session, plugin_id: str, lock: bool = False) -> Plugin:
        stmt = select(Plugin).where(Plugin.id == plugin_id)
        if lock:
            stmt = stmt.with_for_update()
        plugin = s.scalars(stmt).first()
        if plugin is None:
            raise PluginNotFoundError(plugin_id)
        return plugin

    def _current_version(self, s: Session, plugin: Plugin) -> PluginVersion:
        version = s.scalars(
            select(PluginVersion).where(
                PluginVersion.plugin_id == plugin.id, PluginVersion.version == plugin.version
            )
        ).first()
        if version is None:  # pragma: no cover - the registry never leaves it missing
            raise PluginStateError(plugin.id, f"its current version {plugin.version} is missing")
        return version

    def _manifest(self, s: Session, plugin: Plugin) -> Manifest:
        return parse_manifest(self._current_version(s, plugin).manifest, "stored manifest")

    @staticmethod
    def _stored(plugin: Plugin) -> dict[str, StoredSetting]:
        return {r.name: StoredSetting(r.value, r.ciphertext) for r in plugin.settings}

    def _typed(self, plugin: Plugin, manifest: Manifest) -> dict[str, Any]:
        return typed_values(plugin.id, manifest, self._stored(plugin), self.keyring)

    @staticmethod
    def _new_plugin(manifest: Manifest, source: str) -> Plugin:
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

    @staticmethod
    def _version_row(cand: Candidate, actor: str | None) -> PluginVersion:
        return PluginVersion(
            plugin_id=cand.manifest.plugin_id,
            version=cand.manifest.version,
            manifest=manifest_info(cand.manifest),
            sha256=cand.sha256,
            size=len(cand.archive_bytes),
            archive=cand.archive_bytes,
            uploaded_at=utcnow(),
            uploaded_by=actor,
        )

    @staticmethod
    def _entry_point_version(ep: Any, actor: str | None) -> PluginVersion:
        return PluginVersion(
            plugin_id=ep.manifest.plugin_id,
            version=ep.manifest.version,
            manifest=manifest_info(ep.manifest),
            sha256="entry-point:" + (ep.distribution or ep.name),
            size=0,
            archive=None,
            entry_point=ep.value,
            uploaded_at=utcnow(),
            uploaded_by=actor,
        )

    def _sync_permissions(self, s: Session, plugin: Plugin, manifest: Manifest, actor: str | None) -> None:
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

    def _switch_version(self, s: Session, plugin: Plugin, manifest: Manifest, actor: str | None) -> list[str]:
        """Point the plugin at another version: identity, permissions and settings follow."""
        warnings: list[str] = []
        before = {p.name for p in plugin.permissions}
        plugin.version = manifest.version
        plugin.name = manifest.name
        plugin.description = manifest.description
        plugin.author = manifest.author
        plugin.email = manifest.email
        plugin.updated_at = utcnow()
        self._sync_permissions(s, plugin, manifest, actor)
        added = sorted({p.name for p in manifest.permissions} - before)
        if added:
            warnings.append(
                f"version {manifest.version} requests {', '.join(added)}: not granted until you grant it"
            )
        kept, notes = carry_over(self._stored(plugin), manifest)
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

    def _check_loads(self, s: Session, version: PluginVersion, manifest: Manifest) -> None:
        if version.archive is None and version.entry_point is None:
            raise PluginStateError(version.plugin_id, f"version {version.version} has no code stored")
        loader = PluginLoader(import_time_limit=self.config.plugin_import_time_limit)
        try:
            if version.entry_point:
                loader.load_object(manifest, _entry_point_object(version.entry_point))
            else:
                loader.load_folder(manifest, self.materialise(s, version), tag=version.sha256)
        finally:
            loader.unload_all()

    def _lifecycle(
        self,
        loaded: LoadedPlugin,
        hook: str,
        kwargs: dict[str, Any],
        settings: Mapping[str, Any],
        actor: str | None,
    ) -> Outcome | None:
        """Call one lifecycle hook on this plugin only; ``None`` if it does not implement it."""
        call = loaded.hooks.get(hook)
        if call is None:
            return None
        secrets = [str(v) for k, v in settings.items() if _is_secret(loaded.manifest, k) and v]
        context = build_context(
            loaded.manifest, settings, plugin_logger(loaded.plugin_id, secrets), user=actor
        )
        return invoke(
            call,
            {**kwargs, "context": context},
            time_limit=self.config.plugin_time_limit,
            max_bytes=self.config.result_max_bytes,
            check=hook != "settings_page",
        )

    def _best_effort_hook(self, s: Session, plugin: Plugin, hook: str, actor: str | None) -> list[str]:
        try:
            manifest = self._manifest(s, plugin)
            with self._loaded(s, plugin) as loaded:
                outcome = self._lifecycle(
                    loaded, hook, {"plugin_id": plugin.id}, self._typed(plugin, manifest), actor
                )
        except Exception as exc:
            return [f"{hook} hook not called: {exc}"]
        if outcome is not None and not outcome.ok:
            return [f"{hook} hook failed ({outcome.error}); carried on"]
        return []

    def _view(self, s: Session, plugin: Plugin, detail: bool = False) -> PluginView:
        manifest = self._manifest(s, plugin)
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
        if detail:
            view.settings = display_values(manifest, self._stored(plugin))
            view.permission_details = [
                {
                    "name": p.name,
                    "description": p.description,
                    "granted": p.granted,
                    "changed_at": p.changed_at.isoformat(),
                    "changed_by": p.changed_by,
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
        return view

    @staticmethod
    def _audit(s: Session, actor: str | None, action: str, plugin_id: str, **detail: Any) -> None:
        s.add(AuditEntry(at=utcnow(), actor=actor, action=action, plugin_id=plugin_id, detail=detail))

    @staticmethod
    def _bump(s: Session) -> None:
        s.execute(
            update(RegistryState)
            .where(RegistryState.id == 1)
            .values(revision=RegistryState.revision + 1, changed_at=utcnow())
        )


def _is_secret(manifest: Manifest, name: str) -> bool:
    spec = manifest.setting(name)
    return spec is not None and spec.is_secret


def _entry_point_object(value: str) -> Any:
    from importlib.metadata import EntryPoint

    return EntryPoint(name="plugin", value=value, group="services_ai.plugins").load()


# -- what a worker process needs to know ----------------------------------------------------


@dataclass(frozen=True)
class ActivePlugin:
    """One enabled plugin as the registry held it at one revision."""

    plugin_id: str
    version: str
    sha256: str
    source: str
    entry_point: str | None
    manifest: Manifest
    granted: frozenset[str]
    enabled: bool
    settings: Mapping[str, Any]
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class RegistrySnapshot:
    revision: int
    plugins: dict[str, ActivePlugin]
    # Plugins whose registry state could not be read (e.g. a secret that fails to decrypt).
    problems: dict[str, str]


def take_snapshot(registry: PluginRegistry) -> RegistrySnapshot:
    """The enabled plugins, their grants and typed settings, read in one transaction."""
    from sqlalchemy.orm import selectinload

    from services_ai_plugins.errors import ServicesAIError

    with registry.db.session() as s:
        revision = int(s.scalar(select(RegistryState.revision).where(RegistryState.id == 1)) or 0)
        rows = s.scalars(
            select(Plugin)
            .where(Plugin.enabled.is_(True))
            .options(selectinload(Plugin.permissions), selectinload(Plugin.settings))
            .order_by(Plugin.id)
        ).all()
        versions = {
            (v.plugin_id, v.version): v
            for v in s.scalars(select(PluginVersion).where(PluginVersion.plugin_id.in_([p.id for p in rows])))
        }
        plugins: dict[str, ActivePlugin] = {}
        problems: dict[str, str] = {}
        for p in rows:
            version = versions.get((p.id, p.version))
            if version is None:
                problems[p.id] = f"current version {p.version} is missing"
                continue
            manifest = parse_manifest(version.manifest, "stored manifest")
            try:
                settings = registry._typed(p, manifest)
            except ServicesAIError as exc:
                problems[p.id] = str(exc)
                continue
            secrets = tuple(str(v) for k, v in settings.items() if v and _is_secret(manifest, k))
            plugins[p.id] = ActivePlugin(
                plugin_id=p.id,
                version=p.version,
                sha256=version.sha256,
                source=p.source,
                entry_point=version.entry_point,
                manifest=manifest,
                granted=frozenset(perm.name for perm in p.permissions if perm.granted),
                enabled=p.enabled,
                settings=settings,
                secrets=secrets,
            )
        return RegistrySnapshot(revision, plugins, problems)
