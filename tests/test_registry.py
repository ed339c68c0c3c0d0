"""The plugin lifecycle through the registry service, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from services_ai_plugins.errors import (
    ManifestError,
    PermissionDeniedError,
    PluginExistsError,
    PluginLoadError,
    PluginNotFoundError,
    PluginStateError,
)
from services_ai_plugins.host import Host
from services_ai_plugins.infra.models import AuditEntry, Plugin, PluginPermission, PluginVersion
from services_ai_plugins.lifecycle import archive, packaging
from tests.helpers import LEAD_MAIN, PLUGINS, SAMPLE_PLUGIN, manifest_for, write_plugin


def _rows(host: Host) -> dict[str, int]:
    with host.db.session() as s:
        return {
            "plugins": len(s.scalars(select(Plugin)).all()),
            "versions": len(s.scalars(select(PluginVersion)).all()),
            "permissions": len(s.scalars(select(PluginPermission)).all()),
        }


def test_install_from_folder_starts_disabled_with_every_permission_off(host: Host) -> None:
    report = host.registry.install(SAMPLE_PLUGIN, actor="tester")
    view = report.plugin
    assert (view.id, view.version, view.enabled) == ("lead-insights", "1.0.0", False)
    assert view.permissions == {
        "booking_access": False,
        "dashboard_widget": False,
        "data_export": False,
        "lead_access": False,
    }
    assert [p.id for p in host.registry.plugins()] == ["lead-insights"]
    # The archive itself is stored, with its hash, so any host can materialise it.
    with host.db.session() as s:
        version = s.scalars(select(PluginVersion)).one()
        assert version.archive is not None
        assert archive.sha256_hex(version.archive) == version.sha256
    assert (host.config.cache_dir / version.sha256 / "manifest.json").is_file()


def test_install_from_zip_equals_install_from_folder(host: Host, tmp_path: Path) -> None:
    zip_path = tmp_path / "sample.zip"
    zip_path.write_bytes(packaging.package_dir(SAMPLE_PLUGIN))
    report = host.registry.install(zip_path)
    assert report.plugin.id == "lead-insights"
    assert (
        host.registry.show("lead-insights").hooks
        == json.loads((SAMPLE_PLUGIN / "manifest.json").read_text())["hooks"]
    )


def test_install_twice_is_refused(host: Host) -> None:
    host.registry.install(PLUGINS / "readme_style")
    with pytest.raises(PluginExistsError, match="plugin readme-style: version 1.0.0 is already installed"):
        host.registry.install(PLUGINS / "readme_style")
    assert _rows(host)["versions"] == 1


@pytest.mark.parametrize(
    ("manifest_fields", "main", "error", "message"),
    [
        (
            {"hooks": ["lead_created", "booking_created"]},
            LEAD_MAIN,
            ManifestError,
            "hooks: declared hook booking_created is not implemented in main.py",
        ),
        (
            {"hooks": []},
            LEAD_MAIN,
            ManifestError,
            "hooks: main.py implements lead_created but the manifest does not declare it",
        ),
        (
            {},
            "from services_ai_plugins import hookimpl\n@hookimpl\ndef lead_created(lead, ctx):\n    return 1\n",
            PluginLoadError,
            "lead_created() takes ctx, which the hook does not provide (it provides: lead, context)",
        ),
        (
            {},
            "raise RuntimeError('boom at import')\n",
            PluginLoadError,
            "importing main failed: RuntimeError: boom at import",
        ),
        (
            {"requires_python": ">=4.0"},
            LEAD_MAIN,
            ManifestError,
            "requires_python: needs Python >=4.0",
        ),
        (
            {"entry_point": "plugin.py"},
            LEAD_MAIN,
            ManifestError,
            "entry_point: 'plugin.py' names no module in the plugin (expected plugin.py)",
        ),
        (
            {"plugin_class": "Missing"},
            LEAD_MAIN,
            ManifestError,
            "plugin_class: 'Missing' is not a class in main.py",
        ),
        (
            {"version": "1.0"},
            LEAD_MAIN,
            ManifestError,
            "version: '1.0' is not a semantic version",
        ),
    ],
)
def test_bad_plugins_are_refused_and_leave_nothing(
    host: Host, tmp_path: Path, manifest_fields: dict, main: str, error: type, message: str
) -> None:
    folder = write_plugin(tmp_path / "bad", manifest_for(**manifest_fields), main)
    modules_before = set(sys.modules)
    with pytest.raises(error) as caught:
        host.registry.install(folder)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert _rows(host) == {"plugins": 0, "versions": 0, "permissions": 0}
    staging = host.config.cache_dir / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []
    assert [p for p in host.config.cache_dir.iterdir() if p.name != ".staging"] == []
    assert not [m for m in set(sys.modules) - modules_before if m.startswith("_sai_plugin_")]


def test_plugin_installed_hook_failing_rolls_the_install_back(host: Host, tmp_path: Path) -> None:
    main = LEAD_MAIN + "\n@hookimpl\ndef plugin_installed(plugin_id):\n    raise ValueError('no thanks')\n"
    folder = write_plugin(tmp_path / "p", manifest_for(hooks=["lead_created", "plugin_installed"]), main)
    with pytest.raises(PluginLoadError, match="plugin_installed hook failed: ValueError: no thanks"):
        host.registry.install(folder)
    assert _rows(host)["plugins"] == 0
    assert host.registry.revision() == 0


def test_every_change_bumps_the_revision_and_is_audited(host: Host) -> None:
    r0 = host.registry.revision()
    host.registry.install(SAMPLE_PLUGIN, actor="ann")
    host.registry.grant("lead-insights", "lead_access", actor="ann")
    host.registry.enable("lead-insights", actor="bob")
    host.registry.disable("lead-insights", actor="bob")
    assert host.registry.revision() == r0 + 4
    with host.db.session() as s:
        actions = [(a.action, a.actor) for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == [("install", "ann"), ("grant", "ann"), ("enable", "bob"), ("disable", "bob")]


def test_grant_and_revoke(host: Host) -> None:
    host.registry.install(SAMPLE_PLUGIN)
    assert host.registry.grant("lead-insights", "lead_access").plugin.permissions["lead_access"]
    assert not host.registry.revoke("lead-insights", "lead_access").plugin.permissions["lead_access"]


def test_granting_an_undeclared_permission_is_refused(host: Host) -> None:
    host.registry.install(PLUGINS / "readme_style")
    with pytest.raises(PermissionDeniedError) as caught:
        host.registry.grant("readme-style", "booking_access")
    assert str(caught.value) == (
        "plugin readme-style: booking_access cannot be granted: its manifest does not declare it "
        "(declared: dashboard_widget, lead_access)"
    )
    with pytest.raises(PermissionDeniedError, match="'root' is not a permission"):
        host.registry.grant("readme-style", "root")


def test_granting_the_canonical_name_grants_the_declared_alias(host: Host) -> None:
    host.registry.install(PLUGINS / "plan_style")
    view = host.registry.grant("example-plugin", "lead_access").plugin
    assert view.permissions == {"create_bookings": False, "read_bookings": False, "read_leads": True}


def test_enable_needs_required_settings(host: Host) -> None:
    host.registry.install(PLUGINS / "plan_style")
    with pytest.raises(PluginStateError, match="required setting api_key is not set"):
        host.registry.enable("example-plugin")
    host.registry.set_settings("example-plugin", {"api_key": "k1"})
    assert host.registry.enable("example-plugin").plugin.enabled


def test_unknown_plugin(host: Host) -> None:
    with pytest.raises(PluginNotFoundError, match="plugin nope: is not installed"):
        host.registry.enable("nope")


def test_uninstall_removes_rows_and_files(host: Host) -> None:
    host.registry.install(SAMPLE_PLUGIN)
    sha = host.registry.show("lead-insights").versions[0].sha256  # type: ignore[index]
    host.registry.uninstall("lead-insights")
    assert _rows(host) == {"plugins": 0, "versions": 0, "permissions": 0}
    assert not (host.config.cache_dir / sha).exists()
    with pytest.raises(PluginNotFoundError):
        host.registry.show("lead-insights")


def test_lifecycle_hooks_are_called_on_the_plugin_concerned_only(host: Host, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    main = (
        LEAD_MAIN
        + f"""
import pathlib
MARKS = pathlib.Path({str(marks)!r})

def _mark(plugin_id, what):
    (MARKS / f"{{plugin_id}}.{{what}}").write_text("x")

@hookimpl
def plugin_installed(plugin_id, plugin_info):
    _mark(plugin_id, "installed")

@hookimpl
def plugin_enabled(plugin_id):
    _mark(plugin_id, "enabled")

@hookimpl
def plugin_disabled(plugin_id):
    _mark(plugin_id, "disabled")

@hookimpl
def plugin_uninstalled(plugin_id):
    _mark(plugin_id, "uninstalled")
"""
    )
    hooks = ["lead_created", "plugin_installed", "plugin_enabled", "plugin_disabled", "plugin_uninstalled"]
    for name in ("One", "Two"):
        host.registry.install(write_plugin(tmp_path / name, manifest_for(name, hooks=hooks), main))
    host.registry.enable("one")
    host.registry.disable("one")
    host.registry.uninstall("one")
    assert sorted(p.name for p in marks.iterdir()) == [
        "one.disabled",
        "one.enabled",
        "one.installed",
        "one.uninstalled",
        "two.installed",
    ]


def test_uninstall_goes_ahead_when_the_hook_fails(host: Host, tmp_path: Path) -> None:
    main = LEAD_MAIN + "\n@hookimpl\ndef plugin_uninstalled():\n    raise RuntimeError('stuck')\n"
    folder = write_plugin(tmp_path / "p", manifest_for(hooks=["lead_created", "plugin_uninstalled"]), main)
    host.registry.install(folder)
    report = host.registry.uninstall("test-plugin")
    assert report.warnings == [
        "plugin_uninstalled hook failed (RuntimeError: stuck (at main.py:10 in plugin_uninstalled)); carried on"
    ]
    assert _rows(host)["plugins"] == 0


# -- upgrade and rollback ---------------------------------------------------------------------


def _versioned(tmp_path: Path, version: str, **fields: object) -> Path:
    settings = [
        {"name": "threshold", "type": "number", "default": 5},
        {"name": "token", "type": "password"},
    ]
    fields.setdefault("settings", settings)
    return write_plugin(tmp_path / version, manifest_for(version=version, **fields), LEAD_MAIN)


def test_upgrade_keeps_settings_and_grants_new_permissions_start_off(host: Host, tmp_path: Path) -> None:
    host.registry.install(_versioned(tmp_path, "1.0.0"))
    host.registry.set_settings("test-plugin", {"threshold": 9, "token": "s3cret"})
    host.registry.grant("test-plugin", "lead_access")
    host.registry.enable("test-plugin")
    report = host.registry.upgrade(
        "test-plugin",
        _versioned(tmp_path, "1.1.0", permissions=["lead_access", "booking_access"]),
    )
    view = report.plugin
    assert view.version == "1.1.0"
    assert view.enabled
    assert view.permissions == {"booking_access": False, "lead_access": True}
    assert report.warnings == ["version 1.1.0 requests booking_access: not granted until you grant it"]
    assert host.registry.typed_settings("test-plugin") == {"threshold": 9, "token": "s3cret"}
    versions = host.registry.show("test-plugin").versions or []
    assert [(v.version, v.current) for v in versions] == [("1.0.0", False), ("1.1.0", True)]


def test_upgrade_must_be_newer(host: Host, tmp_path: Path) -> None:
    host.registry.install(_versioned(tmp_path, "1.2.0"))
    with pytest.raises(PluginStateError, match="version 1.1.0 is not newer than the installed 1.2.0"):
        host.registry.upgrade("test-plugin", _versioned(tmp_path, "1.1.0"))
    with pytest.raises(PluginStateError, match="version 1.2.0-rc.1 is not newer"):
        host.registry.upgrade("test-plugin", _versioned(tmp_path, "1.2.0-rc.1"))


def test_upgrade_of_another_plugin_is_refused(host: Host, tmp_path: Path) -> None:
    host.registry.install(_versioned(tmp_path, "1.0.0"))
    other = write_plugin(tmp_path / "other", manifest_for("Other", version="2.0.0"), LEAD_MAIN)
    with pytest.raises(PluginStateError, match="the archive holds plugin other, not test-plugin"):
        host.registry.upgrade("test-plugin", other)


def test_failed_upgrade_leaves_the_previous_version_intact(host: Host, tmp_path: Path) -> None:
    host.registry.install(_versioned(tmp_path, "1.0.0"))
    host.registry.grant("test-plugin", "lead_access")
    host.registry.enable("test-plugin")
    before = host.registry.show("test-plugin")
    broken = write_plugin(tmp_path / "broken", manifest_for(version="2.0.0"), "import nonexistent_module\n")
    with pytest.raises(PluginLoadError, match="ModuleNotFoundError"):
        host.registry.upgrade("test-plugin", broken)
    after = host.registry.show("test-plugin")
    assert after.model_dump() == before.model_dump()


def test_rollback_returns_to_the_previous_version(host: Host, tmp_path: Path) -> None:
    host.registry.install(_versioned(tmp_path, "1.0.0"))
    host.registry.set_settings("test-plugin", {"threshold": 7})
    host.registry.upgrade(
        "test-plugin",
        _versioned(tmp_path, "2.0.0", settings=[{"name": "threshold", "type": "number", "default": 5}]),
    )
    report = host.registry.rollback("test-plugin")
    assert report.plugin.version == "1.0.0"
    assert report.warnings[0] == "version 2.0.0 is kept; upgrade to it again with its ZIP"
    assert host.registry.typed_settings("test-plugin")["threshold"] == 7
    versions = host.registry.show("test-plugin").versions or []
    assert [(v.version, v.current) for v in versions] == [("1.0.0", True), ("2.0.0", False)]
    with pytest.raises(PluginStateError, match="has no earlier version to roll back to"):
        host.registry.rollback("test-plugin")
    # The version rolled back from is still there: the same archive upgrades to it again...
    again = _versioned(tmp_path, "2.0.0", settings=[{"name": "threshold", "type": "number", "default": 5}])
    assert host.registry.upgrade("test-plugin", again).plugin.version == "2.0.0"
    # ...but not an archive with other contents under the same version.
    other = _versioned(
        tmp_path / "other", "2.0.0", settings=[{"name": "threshold", "type": "number", "default": 9}]
    )
    host.registry.rollback("test-plugin")
    with pytest.raises(PluginStateError, match="version 2.0.0 was uploaded before with other contents"):
        host.registry.upgrade("test-plugin", other)


def test_upgrade_adding_a_required_setting_disables_until_set(host: Host, tmp_path: Path) -> None:
    host.registry.install(_versioned(tmp_path, "1.0.0"))
    host.registry.enable("test-plugin")
    report = host.registry.upgrade(
        "test-plugin",
        _versioned(tmp_path, "1.1.0", settings=[{"name": "region", "type": "text", "required": True}]),
    )
    assert not report.plugin.enabled
    assert report.plugin.disabled_reason == "version 1.1.0 needs setting region; set it, then enable"


def test_an_id_that_reads_as_an_installed_plugins_is_refused(host: Host, tmp_path: Path) -> None:
    host.registry.install(write_plugin(tmp_path / "a", manifest_for("Lead Scorer"), LEAD_MAIN))
    twin = write_plugin(
        tmp_path / "b", manifest_for("LEAD \u3000 \uff33corer", id="lead-scorer-2"), LEAD_MAIN
    )
    with pytest.raises(PluginStateError, match="reads as the installed plugin lead-scorer's"):
        host.registry.install(twin)
    assert [p.id for p in host.registry.plugins()] == ["lead-scorer"]
