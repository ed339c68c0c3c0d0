"""A process's loaded plugins follow the registry: enable, disable, grant, revoke, upgrade."""

from __future__ import annotations

import shutil
from pathlib import Path

from services_ai_plugins.calling.runtime import PluginRuntime
from services_ai_plugins.host import Host
from tests.helpers import LEAD_MAIN, PLUGINS, manifest_for, write_plugin


def _ids(runtime: PluginRuntime, hook: str) -> list[str]:
    return [t.plugin.plugin_id for t in runtime.targets(hook)]


def test_runtime_follows_enable_grant_revoke_disable(host: Host) -> None:
    host.registry.install(PLUGINS / "twin_a")
    runtime = PluginRuntime(host.registry, poll_seconds=0)
    runtime.refresh()
    assert _ids(runtime, "lead_created") == []
    host.registry.enable("twin-a")
    runtime.refresh()
    assert "twin-a" in runtime.plugins
    assert _ids(runtime, "lead_created") == []  # enabled, but lead_access not granted
    host.registry.grant("twin-a", "lead_access")
    runtime.refresh()
    assert _ids(runtime, "lead_created") == ["twin-a"]
    host.registry.revoke("twin-a", "lead_access")
    runtime.refresh()
    assert _ids(runtime, "lead_created") == []
    host.registry.disable("twin-a")
    runtime.refresh()
    assert runtime.plugins == {}
    runtime.close()


def test_refresh_reads_nothing_until_the_poll_interval_passes(host: Host) -> None:
    runtime = PluginRuntime(host.registry, poll_seconds=3600)
    assert runtime.refresh() is True  # the first check always happens
    host.registry.install(PLUGINS / "twin_a")
    host.registry.enable("twin-a")
    assert runtime.refresh() is False
    assert runtime.refresh(force=True) is True
    assert "twin-a" in runtime.plugins


def test_one_plugin_failing_to_load_never_stops_the_others(host: Host, tmp_path: Path) -> None:
    for name in ("twin_a", "twin_b"):
        host.registry.install(PLUGINS / name)
        pid = name.replace("_", "-")
        host.registry.grant(pid, "lead_access")
        host.registry.enable(pid)
    # Break twin-a's cached code on this host (as a bad disk or a hand edit would).
    sha = host.registry.show("twin-a").versions[0].sha256  # type: ignore[index]
    (host.config.cache_dir / sha / "main.py").write_text("raise RuntimeError('corrupt')\n")
    runtime = PluginRuntime(host.registry, poll_seconds=0)
    runtime.refresh()
    assert _ids(runtime, "lead_created") == ["twin-b"]
    assert "RuntimeError: corrupt" in runtime.failures["twin-a"]
    runtime.close()


def test_a_host_that_never_saw_a_plugin_materialises_it_from_the_database(host: Host) -> None:
    host.registry.install(PLUGINS / "twin_a")
    host.registry.grant("twin-a", "lead_access")
    host.registry.enable("twin-a")
    shutil.rmtree(host.config.cache_dir)  # a fresh machine: nothing on disk
    runtime = PluginRuntime(host.registry, poll_seconds=0)
    runtime.refresh()
    (target,) = runtime.targets("lead_created")
    assert target.call.function({"id": "x"}, {})["who"] == "twin-a"
    assert (host.config.cache_dir / target.plugin.sha256 / "main.py").is_file()
    runtime.close()


def test_upgrade_reloads_the_new_code(host: Host, tmp_path: Path) -> None:
    v1 = write_plugin(tmp_path / "v1", manifest_for(version="1.0.0"), LEAD_MAIN.replace("success", "v1"))
    v2 = write_plugin(tmp_path / "v2", manifest_for(version="2.0.0"), LEAD_MAIN.replace("success", "v2"))
    host.registry.install(v1)
    host.registry.grant("test-plugin", "lead_access")
    host.registry.enable("test-plugin")
    runtime = PluginRuntime(host.registry, poll_seconds=0)
    runtime.refresh()
    assert runtime.targets("lead_created")[0].call.function({"id": "1"}, {"settings": {}})["status"] == "v1"
    host.registry.upgrade("test-plugin", v2)
    runtime.refresh()
    assert runtime.targets("lead_created")[0].call.function({"id": "1"}, {"settings": {}})["status"] == "v2"
    runtime.close()
