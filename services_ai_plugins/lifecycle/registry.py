"""The plugin registry: every rule of the plugin lifecycle.

The CLI and the web app call it; neither holds a rule of its own. Each operation runs in one
database transaction and bumps the registry revision in it, so a failure part way leaves the
previous state intact and every worker sees a change as one step. A plugin's lifecycle hooks
are called through the one hook-calling path (``HookCaller``), so under the default isolation
they run in a sandbox, not here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from schemas.errors import FieldError
from schemas.manifest import Manifest, parse_manifest, semver_key
from services_ai_plugins.calling.caller import HookCaller, Outcome, Target
from services_ai_plugins.calling.executor import PluginCode
from services_ai_plugins.calling.inline import secret_values
from services_ai_plugins.calling.loader import discover_entry_points, manifest_info
from services_ai_plugins.calling.permissions import ALIASES, PERMISSION_DESCRIPTIONS
from services_ai_plugins.calling.requests import lifecycle_call, settings_page_call
from services_ai_plugins.config import Config
from services_ai_plugins.errors import (
    ManifestError,
    MissingSettingsError,
    PermissionDeniedError,
    PluginExistsError,
    PluginLoadError,
    PluginStateError,
    ServicesAIError,
    SettingsError,
)
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import (
    ExportRow,
    HookResult,
    Plugin,
    PluginProblem,
    PluginSetting,
    PluginVersion,
    utcnow,
)
from services_ai_plugins.lifecycle import archive, rows
from services_ai_plugins.lifecycle.codestore import CodeStore
from services_ai_plugins.lifecycle.runtime import read_revision
from services_ai_plugins.lifecycle.settings import (
    Keyring,
    SettingsUpdateError,
    display_values,
    missing_required,
    prepare_update,
    typed_values,
)
from services_ai_plugins.lifecycle.validation import candidate, check_hooks
from services_ai_plugins.lifecycle.views import ChangeReport, PluginView

__all__ = ["PluginRegistry"]

log = logging.getLogger(__name__)


class PluginRegistry:
    """Install, upgrade, roll back, enable, disable, permit, configure and remove plugins."""

    def __init__(
        self, config: Config, db: Database, keyring: Keyring, codes: CodeStore, caller: HookCaller
    ) -> None:
        self.config = config
        self.db = db
        self.keyring = keyring
        self.codes = codes
        self.caller = caller

    @property
    def limits(self) -> archive.ArchiveLimits:
        return self.codes.limits

    # -- reading ----------------------------------------------------------------------------

    def revision(self) -> int:
        """The registry revision: it moves with every change."""
        return read_revision(self.db)

    def plugins(self) -> list[PluginView]:
        with self.db.session() as s:
            return [rows.plugin_view(s, p) for p in s.scalars(select(Plugin).order_by(Plugin.id)).all()]

    def show(self, plugin_id: str) -> PluginView:
        with self.db.session() as s:
            return rows.plugin_view(s, rows.get_plugin(s, plugin_id), detail=True)

    def manifest(self, plugin_id: str) -> Manifest:
        with self.db.session() as s:
            return rows.manifest_of(s, rows.get_plugin(s, plugin_id))

    def get_settings(self, plugin_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """Settings for display, secrets masked (never decrypted); one of them with ``name``."""
        with self.db.session() as s:
            plugin = rows.get_plugin(s, plugin_id)
            shown = display_values(rows.manifest_of(s, plugin), rows.stored_settings(plugin))
        if name is None:
            return shown
        picked = [r for r in shown if r["name"] == name]
        if not picked:
            raise SettingsError(plugin_id, [FieldError(name, "is not a setting of this plugin")])
        return picked

    # -- installing -------------------------------------------------------------------------

    def validate(self, path: Path) -> Manifest:
        """``plugin validate``: every check of install, nothing stored."""
        with candidate(path, self.codes, self.caller.executor, self.config.plugin_import_time_limit) as cand:
            return cand.manifest

    def install(self, path: Path, actor: str | None = None) -> ChangeReport:
        """Install a plugin from a ZIP or a folder, disabled, with every permission off."""
        with candidate(path, self.codes, self.caller.executor, self.config.plugin_import_time_limit) as cand:
            manifest = cand.manifest
            plugin_id = manifest.plugin_id
            with self.db.session() as s:
                existing = s.get(Plugin, plugin_id)
                if existing is not None:
                    raise PluginExistsError(plugin_id, existing.version)
                rows.check_distinct(s, manifest)
                plugin = rows.new_plugin(manifest, source="archive")
                s.add(plugin)
                s.add(
                    rows.new_version(
                        manifest, cand.sha256, actor, archive=cand.archive_bytes, digest=cand.digest
                    )
                )
                rows.sync_permissions(s, plugin, manifest, actor)
                s.flush()
                defaults = typed_values(plugin_id, manifest, {}, self.keyring)
                target = self._target_for(manifest, frozenset(), defaults, cand.code)
                outcome = self._hook(
                    target, "plugin_installed", lifecycle_call(plugin_id, manifest_info(manifest), actor)
                )
                if outcome is not None and not outcome.ok:  # raising rolls the whole install back
                    raise PluginLoadError(plugin_id, f"plugin_installed hook failed: {outcome.error}")
                rows.audit(s, actor, "install", plugin_id, version=manifest.version, sha256=cand.sha256)
                rows.bump(s)
            self.codes.keep(cand.sha256, cand.root)
        return ChangeReport(self.show(plugin_id))

    def upgrade(self, plugin_id: str, path: Path, actor: str | None = None) -> ChangeReport:
        """Replace the plugin's code with a newer version; settings and grants carry over. A
        version rolled back from can be upgraded to again with the same archive."""
        with candidate(path, self.codes, self.caller.executor, self.config.plugin_import_time_limit) as cand:
            new = cand.manifest
            if new.plugin_id != plugin_id:
                raise PluginStateError(
                    plugin_id, f"the archive holds plugin {new.plugin_id}, not {plugin_id}"
                )
            with self.db.session() as s:
                plugin = rows.get_plugin(s, plugin_id, lock=True)
                if plugin.source != "archive":
                    raise PluginStateError(plugin_id, "is pip-installed; upgrade it with pip")
                if semver_key(new.version) <= semver_key(plugin.version):
                    raise PluginStateError(
                        plugin_id, f"version {new.version} is not newer than the installed {plugin.version}"
                    )
                before = s.scalars(
                    select(PluginVersion).where(
                        PluginVersion.plugin_id == plugin_id, PluginVersion.version == new.version
                    )
                ).first()
                if before is not None and before.sha256 != cand.sha256:
                    raise PluginStateError(
                        plugin_id, f"version {new.version} was uploaded before with other contents"
                    )
                if before is None:
                    s.add(
                        rows.new_version(
                            new, cand.sha256, actor, archive=cand.archive_bytes, digest=cand.digest
                        )
                    )
                warnings = rows.switch_version(s, plugin, new, actor)
                rows.audit(s, actor, "upgrade", plugin_id, version=new.version, sha256=cand.sha256)
                rows.bump(s)
            self.codes.keep(cand.sha256, cand.root)
        return ChangeReport(self.show(plugin_id), warnings)

    def rollback(self, plugin_id: str, actor: str | None = None) -> ChangeReport:
        """Go back to the version uploaded before the current one. The current one is kept: the
        same archive upgrades to it again."""
        with self.db.session() as s:
            plugin = rows.get_plugin(s, plugin_id, lock=True)
            versions = s.scalars(
                select(PluginVersion).where(PluginVersion.plugin_id == plugin_id).order_by(PluginVersion.id)
            ).all()
            current = next((v for v in versions if v.version == plugin.version), None)
            earlier = [
                v
                for v in versions
                if current is not None
                and v.id < current.id
                and semver_key(v.version) < semver_key(current.version)
            ]
            if current is None or not earlier:
                raise PluginStateError(plugin_id, "has no earlier version to roll back to")
            target = earlier[-1]
            manifest = parse_manifest(target.manifest, "stored manifest")
            if target.archive is None and target.entry_point is None:
                raise PluginStateError(plugin_id, f"version {target.version} has no code stored")
            self.codes.code(s, target, manifest)  # its code is still there and intact
            warnings = rows.switch_version(s, plugin, manifest, actor)
            rows.audit(s, actor, "rollback", plugin_id, version=target.version, left=current.version)
            rows.bump(s)
        return ChangeReport(
            self.show(plugin_id),
            [f"version {current.version} is kept; upgrade to it again with its ZIP", *warnings],
        )

    # -- state ------------------------------------------------------------------------------

    def enable(self, plugin_id: str, actor: str | None = None) -> ChangeReport:
        warnings: list[str] = []
        with self.db.session() as s:
            plugin = rows.get_plugin(s, plugin_id, lock=True)
            manifest = rows.manifest_of(s, plugin)
            missing = missing_required(manifest, rows.stored_settings(plugin))
            if missing:
                raise MissingSettingsError(plugin_id, missing)
            if plugin.enabled:
                return ChangeReport(rows.plugin_view(s, plugin), ["already enabled"])
            outcome = self._hook(
                self._target(s, plugin), "plugin_enabled", lifecycle_call(plugin_id, user=actor)
            )
            if outcome is not None and not outcome.ok:
                raise PluginLoadError(plugin_id, f"plugin_enabled hook failed: {outcome.error}")
            plugin.enabled = True
            plugin.disabled_reason = None
            if plugin.permissions and not any(p.granted for p in plugin.permissions):
                warnings.append("no permission is granted yet, so it is called for nothing")
            s.execute(delete(PluginProblem).where(PluginProblem.plugin_id == plugin_id))
            rows.audit(s, actor, "enable", plugin_id)
            rows.bump(s)
            return ChangeReport(rows.plugin_view(s, plugin), warnings)

    def disable(
        self, plugin_id: str, actor: str | None = None, reason: str | None = None, call_hook: bool = True
    ) -> ChangeReport:
        """Disable; the plugin's ``plugin_disabled`` hook failing never blocks this (and it is not
        called at all for a plugin the host quarantines)."""
        with self.db.session() as s:
            plugin = rows.get_plugin(s, plugin_id, lock=True)
            if not plugin.enabled:
                return ChangeReport(rows.plugin_view(s, plugin), ["already disabled"])
            warnings = self._best_effort_hook(s, plugin, "plugin_disabled", actor) if call_hook else []
            plugin.enabled = False
            plugin.disabled_reason = reason
            rows.audit(s, actor, "disable", plugin_id, reason=reason)
            rows.bump(s)
            return ChangeReport(rows.plugin_view(s, plugin), warnings)

    def grant(self, plugin_id: str, permission: str, actor: str | None = None) -> ChangeReport:
        return self._set_permission(plugin_id, permission, True, actor)

    def revoke(self, plugin_id: str, permission: str, actor: str | None = None) -> ChangeReport:
        return self._set_permission(plugin_id, permission, False, actor)

    def _set_permission(
        self, plugin_id: str, permission: str, granted: bool, actor: str | None
    ) -> ChangeReport:
        with self.db.session() as s:
            plugin = rows.get_plugin(s, plugin_id, lock=True)
            row = self._permission_row(plugin, permission, "granted" if granted else "revoked")
            if row.granted == granted:
                word = "granted" if granted else "not granted"
                return ChangeReport(rows.plugin_view(s, plugin), [f"{row.name} was already {word}"])
            row.granted = granted
            row.changed_by = actor
            row.changed_at = utcnow()
            rows.audit(s, actor, "grant" if granted else "revoke", plugin_id, permission=row.name)
            rows.bump(s)
            return ChangeReport(rows.plugin_view(s, plugin))

    @staticmethod
    def _permission_row(plugin: Plugin, permission: str, verb: str) -> Any:
        if permission not in PERMISSION_DESCRIPTIONS:
            raise PermissionDeniedError(
                plugin.id,
                permission,
                f"{permission!r} is not a permission (known: {', '.join(PERMISSION_DESCRIPTIONS)})",
            )
        declared = {p.name: p for p in plugin.permissions}
        if permission in declared:
            return declared[permission]
        # Granting lead_access to a plugin that declared read_leads (its alias) grants read_leads.
        for alias, canonical in ALIASES.items():
            if permission == canonical and alias in declared:
                return declared[alias]
            if permission == alias and canonical in declared:
                return declared[canonical]
        names = ", ".join(declared) or "none"
        raise PermissionDeniedError(
            plugin.id,
            permission,
            f"{permission} cannot be {verb}: its manifest does not declare it (declared: {names})",
        )

    # -- settings ---------------------------------------------------------------------------

    def set_settings(
        self, plugin_id: str, values: Mapping[str, Any], actor: str | None = None, *, from_text: bool = False
    ) -> ChangeReport:
        """Validate every value, then write them all in one transaction (or none)."""
        with self.db.session() as s:
            plugin = rows.get_plugin(s, plugin_id, lock=True)
            manifest = rows.manifest_of(s, plugin)
            try:
                changes = prepare_update(
                    plugin_id,
                    manifest,
                    rows.stored_settings(plugin),
                    values,
                    self.keyring,
                    from_text=from_text,
                )
            except SettingsUpdateError as exc:
                raise SettingsError(plugin_id, exc.errors) from None
            if plugin.enabled:
                required = {sp.name for sp in manifest.settings if sp.required and sp.default is None}
                cleared = [n for n, new in changes.items() if new is None and n in required]
                if cleared:
                    raise SettingsError(
                        plugin_id, [FieldError(n, "is required while the plugin is enabled") for n in cleared]
                    )
            by_name = {r.name: r for r in plugin.settings}
            for name, new in changes.items():
                row = by_name.get(name)
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
            rows.audit(
                s,
                actor,
                "configure",
                plugin_id,
                changed=sorted(changes),
                # Values are never audited for secrets; plain ones are useful history.
                values={k: v.value for k, v in changes.items() if v and k not in secret_names},
            )
            s.execute(
                delete(PluginProblem).where(
                    PluginProblem.plugin_id == plugin_id, PluginProblem.kind == "setup"
                )
            )
            rows.bump(s)
            s.flush()
            s.refresh(plugin)
            return ChangeReport(rows.plugin_view(s, plugin, detail=True))

    def typed_settings(self, plugin_id: str) -> dict[str, Any]:
        """The plugin's own typed settings, secrets decrypted: for its context only."""
        with self.db.session() as s:
            plugin = rows.get_plugin(s, plugin_id)
            return typed_values(
                plugin.id, rows.manifest_of(s, plugin), rows.stored_settings(plugin), self.keyring
            )

    def unset_setting(self, plugin_id: str, name: str, actor: str | None = None) -> ChangeReport:
        with self.db.session() as s:
            plugin = rows.get_plugin(s, plugin_id, lock=True)
            spec = rows.manifest_of(s, plugin).setting(name)
            if spec is None:
                raise SettingsError(plugin_id, [FieldError(name, "is not a setting of this plugin")])
            if spec.required and spec.default is None and plugin.enabled:
                raise SettingsError(plugin_id, [FieldError(name, "is required while the plugin is enabled")])
            s.execute(
                delete(PluginSetting).where(PluginSetting.plugin_id == plugin_id, PluginSetting.name == name)
            )
            rows.audit(s, actor, "configure", plugin_id, unset=name)
            rows.bump(s)
        return ChangeReport(self.show(plugin_id))

    # -- removing ---------------------------------------------------------------------------

    def uninstall(self, plugin_id: str, actor: str | None = None, purge: bool = False) -> ChangeReport:
        """Remove the plugin's rows and cached files; its ``plugin_uninstalled`` hook is called
        first, and its failing never blocks the uninstall. Its hook results and export rows are
        kept (history) unless ``purge``."""
        with self.db.session() as s:
            plugin = rows.get_plugin(s, plugin_id, lock=True)
            view = rows.plugin_view(s, plugin)
            warnings = self._best_effort_hook(s, plugin, "plugin_uninstalled", actor)
            shas = list(s.scalars(select(PluginVersion.sha256).where(PluginVersion.plugin_id == plugin_id)))
            if purge:
                s.execute(delete(HookResult).where(HookResult.plugin_id == plugin_id))
                s.execute(delete(ExportRow).where(ExportRow.plugin_id == plugin_id))
            s.delete(plugin)
            rows.audit(s, actor, "uninstall", plugin_id, version=view.version, purged=purge)
            rows.bump(s)
        self.caller.executor.forget(plugin_id)
        for sha in shas:
            self.codes.remove(sha)
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
            sha = "entry-point:" + (ep.distribution or ep.name)
            with self.db.session() as s:
                existing = s.get(Plugin, plugin_id)
                if existing is not None:
                    if existing.source != "entry_point":
                        problems.append(
                            f"entry point {ep.name}: id {plugin_id} is taken by an installed archive"
                        )
                    elif existing.version != ep.manifest.version:
                        # pip upgraded it: the registry follows, as an upgrade would.
                        s.add(rows.new_version(ep.manifest, sha, actor, entry_point=ep.value))
                        rows.switch_version(s, existing, ep.manifest, actor)
                        rows.bump(s)
                    continue
            code = PluginCode(plugin_id, ep.manifest.version, sha, ep.manifest, entry_point=ep.value)
            try:
                check_hooks(
                    ep.manifest, self.caller.executor.inspect(code, self.config.plugin_import_time_limit)
                )
            except (ManifestError, PluginLoadError) as exc:
                problems.append(f"entry point {ep.name}: {exc}")
                continue
            finally:
                self.caller.executor.forget(plugin_id)
            with self.db.session() as s:
                try:
                    rows.check_distinct(s, ep.manifest)
                except PluginStateError as exc:
                    problems.append(f"entry point {ep.name}: {exc}")
                    continue
                plugin = rows.new_plugin(ep.manifest, source="entry_point")
                s.add(plugin)
                s.add(rows.new_version(ep.manifest, sha, actor, entry_point=ep.value))
                rows.sync_permissions(s, plugin, ep.manifest, actor)
                rows.audit(s, actor, "discover", plugin_id, entry_point=ep.value)
                rows.bump(s)
            added.append(plugin_id)
        return added, problems

    # -- the plugin's own hooks -------------------------------------------------------------

    def render_settings_page(self, plugin_id: str, actor: str | None = None) -> Outcome | None:
        """The plugin's ``settings_page`` (admin only), sanitised; ``None`` if it has none."""
        with self.db.session() as s:
            target = self._target(s, rows.get_plugin(s, plugin_id))
        return self._hook(target, "settings_page", settings_page_call(plugin_id, actor))

    def record_problem(self, plugin_id: str, kind: str, reason: str) -> None:
        """Note what a worker found wrong with a plugin (``status`` and ``plugin show`` list it)."""
        with self.db.session() as s:
            if s.get(Plugin, plugin_id) is None:
                return
            row = s.get(PluginProblem, (plugin_id, kind))
            now = utcnow()
            if row is None:
                s.add(
                    PluginProblem(
                        plugin_id=plugin_id, kind=kind, reason=reason, count=1, first_seen=now, last_seen=now
                    )
                )
            else:
                row.count = row.count + 1 if row.reason == reason else 1
                row.reason = reason
                row.last_seen = now

    def record_crash(self, plugin_id: str, reason: str, threshold: int) -> bool:
        """A plugin's sandbox (or the process running it) died under a call. Past ``threshold``
        deaths in a row it is quarantined: disabled, with the reason shown. True if it was."""
        with self.db.session() as s:
            if s.get(Plugin, plugin_id) is None:
                return False
            row = s.get(PluginProblem, (plugin_id, "crash"))
            now = utcnow()
            if row is None:
                row = PluginProblem(plugin_id=plugin_id, kind="crash", reason=reason, count=0, first_seen=now)
                s.add(row)
            row.count += 1
            row.reason = reason
            row.last_seen = now
            count = row.count
        if count < threshold:
            return False
        self.disable(
            plugin_id,
            actor="host",
            reason=f"quarantined: its sandbox died {count} times in a row (last: {reason}); fix it, then enable it",
            call_hook=False,
        )
        log.error("plugin %s quarantined after %d sandbox deaths in a row", plugin_id, count)
        return True

    def clear_problem(self, plugin_id: str, kind: str) -> None:
        with self.db.session() as s:
            s.execute(
                delete(PluginProblem).where(PluginProblem.plugin_id == plugin_id, PluginProblem.kind == kind)
            )

    def _target_for(
        self,
        manifest: Manifest,
        granted: frozenset[str],
        settings: Mapping[str, Any],
        code: PluginCode,
        enabled: bool = False,
    ) -> Target:
        return Target(
            plugin_id=manifest.plugin_id,
            version=manifest.version,
            manifest=manifest,
            granted=granted,
            enabled=enabled,
            settings=settings,
            secrets=secret_values(code, settings),
            code=code,
        )

    def _target(self, s: Session, plugin: Plugin) -> Target:
        manifest = rows.manifest_of(s, plugin)
        settings = typed_values(plugin.id, manifest, rows.stored_settings(plugin), self.keyring)
        code = self.codes.code(s, rows.current_version(s, plugin), manifest)
        granted = frozenset(p.name for p in plugin.permissions if p.granted)
        return self._target_for(manifest, granted, settings, code, plugin.enabled)

    def _hook(self, target: Target, hook: str, call: Any) -> Outcome | None:
        """Call one of the plugin's own hooks; ``None`` if its manifest does not declare it."""
        if hook not in target.manifest.hooks:
            return None
        return self.caller.call(hook, target, [call])[0]

    def _best_effort_hook(self, s: Session, plugin: Plugin, hook: str, actor: str | None) -> list[str]:
        try:
            outcome = self._hook(self._target(s, plugin), hook, lifecycle_call(plugin.id, user=actor))
        except ServicesAIError as exc:
            return [f"{hook} hook not called: {exc}"]
        if outcome is not None and not outcome.ok:
            return [f"{hook} hook failed ({outcome.error}); carried on"]
        return []
