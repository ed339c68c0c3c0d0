"""Loading plugin code: unique module names, relative imports, seed-style imports, unloading,
and pip-installed plugins found through their entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from schemas.manifest import parse_manifest
from services_ai_plugins.calling.loader import PluginLoader, discover_entry_points
from services_ai_plugins.errors import PluginLoadError
from services_ai_plugins.testing import PluginHarness
from tests.helpers import PLUGINS, SAMPLE_PLUGIN


def _load(loader: PluginLoader, folder: Path):
    manifest = parse_manifest((folder / "manifest.json").read_bytes())
    return loader.load_folder(manifest, folder, tag="test")


def test_two_plugins_with_the_same_module_names_do_not_collide() -> None:
    loader = PluginLoader()
    a = _load(loader, PLUGINS / "twin_a")
    b = _load(loader, PLUGINS / "twin_b")
    assert a.module_name != b.module_name
    call_a = a.hooks["lead_created"].function
    call_b = b.hooks["lead_created"].function
    assert call_a({"id": "1"}, {})["who"] == "twin-a"
    assert call_b({"id": "1"}, {})["who"] == "twin-b"
    # Both registered in the same Pluggy manager under their ids.
    assert {"twin-a", "twin-b"} <= {name for name, _ in loader.pm.list_name_plugin()}
    loader.unload_all()


def test_unload_removes_the_plugin_and_its_modules() -> None:
    loader = PluginLoader()
    loaded = _load(loader, PLUGINS / "twin_a")
    prefix = loaded.module_name
    assert any(m == prefix or m.startswith(prefix + ".") for m in sys.modules)
    loader.unload("twin-a")
    assert loader.pm.get_plugin("twin-a") is None
    assert not [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]
    assert loader.pm.hook.lead_created.get_hookimpls() == []


def test_readme_seed_style_imports_and_class_work() -> None:
    with PluginHarness(PLUGINS / "readme_style") as plugin:
        assert plugin.call("lead_created", lead={"id": "l"}) == {
            "status": "success",
            "message": "Lead processed",
        }
        # As the host stores it: the HTML sanitised, the plugin's name as the title.
        assert plugin.call("dashboard_widget") == {
            "title": "Readme Style",
            "html": '<div class="card">Your widget content</div>',
            "refresh_interval": 300,
        }


def test_plan_seed_style_module_functions_work() -> None:
    with PluginHarness(PLUGINS / "plan_style") as plugin:
        assert plugin.call("lead_created", lead={"id": "l"}) == {"status": "processed"}
        assert plugin.call("booking_created", booking={"id": "b"}) == {"status": "processed"}
        assert plugin.call("dashboard_widget")["title"] == "Example Widget"


def test_seed_alias_modules_never_shadow_real_ones() -> None:
    # The aliases come last on sys.meta_path: a real package of the same name would win.
    from services_ai_plugins.calling.compat import SeedAliasFinder

    assert isinstance(sys.meta_path[-1], SeedAliasFinder) or any(
        isinstance(f, SeedAliasFinder) for f in sys.meta_path
    )
    import plugins.hooks  # type: ignore[import-not-found]
    import services_ai.plugins  # type: ignore[import-not-found]

    from services_ai_plugins import hookimpl

    assert plugins.hooks.hookimpl is hookimpl
    assert services_ai.plugins.hookimpl is hookimpl


def test_a_plugin_that_hangs_on_import_is_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "manifest.json").write_text(
        '{"name": "Slow", "version": "1.0.0", "description": "", "author": "a", "email": "a@b.co"}'
    )
    (folder / "main.py").write_text("import time\ntime.sleep(30)\n")
    loader = PluginLoader(import_time_limit=0.3)
    with pytest.raises(PluginLoadError, match="importing main took over 0.3s"):
        _load(loader, folder)
    assert not [m for m in sys.modules if m.startswith("_sai_plugin_slow_")]


def test_sample_plugin_relative_imports(tmp_path: Path) -> None:
    loader = PluginLoader()
    loaded = _load(loader, SAMPLE_PLUGIN)
    assert f"{loaded.module_name}.scoring" in sys.modules
    loader.unload_all()


def _install_fake_distribution(site: Path, dist: str, package: str, manifest: str, code: str) -> None:
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(code)
    (site / package / "manifest.json").write_text(manifest)
    info = site / f"{dist.replace('-', '_')}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(f"[services_ai.plugins]\n{dist} = {package}\n")


def test_entry_point_plugins_are_discovered_and_a_broken_one_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    good_manifest = (
        '{"name": "Pip Plugin", "version": "1.0.0", "description": "from pip", "author": "a",'
        ' "email": "a@b.co", "hooks": ["lead_created"], "permissions": ["lead_access"]}'
    )
    code = textwrap.dedent(
        """
        from services_ai_plugins import hookimpl

        @hookimpl
        def lead_created(lead):
            return {"status": "success", "from": "pip"}
        """
    )
    _install_fake_distribution(site, "sai-pip-plugin", "sai_pip_plugin", good_manifest, code)
    _install_fake_distribution(site, "sai-broken", "sai_broken", good_manifest, "raise ImportError('nope')\n")
    monkeypatch.syspath_prepend(str(site))
    found, problems = discover_entry_points()
    assert [p.manifest.plugin_id for p in found] == ["pip-plugin"]
    assert len(problems) == 1
    assert "entry point sai-broken (sai_broken): ImportError: nope" in problems[0]
    for name in ("sai_pip_plugin", "sai_broken"):
        sys.modules.pop(name, None)
