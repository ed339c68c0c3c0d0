"""A process's loaded plugins follow the registry: enable, disable, grant, revoke, upgrade."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from services_ai_plugins.calling.caller import Outcome, Target
from services_ai_plugins.calling.requests import event_call
from services_ai_plugins.host import Host
from services_ai_plugins.infra.models import PluginVersion
from services_ai_plugins.lifecycle.runtime import PluginRuntime
from tests.helpers import LEAD_MAIN, PLUGINS, manifest_for, write_plugin


def _ids(runtime: PluginRuntime, hook: str) -> list[str]:
    return [t.plugin_id for t in runtime.targets(hook)]


def test_runtime_follows_enable_grant_revoke_disable(host: Host) -> None:
    host.registry.install(PLUGINS / "twin_a")
    runtime = host.runtime
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
    runtime = PluginRuntime(host.db, host.keyring, host.codes, host.executor, poll_seconds=3600)
    assert runtime.refresh() is True  # the first check always happens
    host.registry.install(PLUGINS / "twin_a")
    host.registry.enable("twin-a")
    assert runtime.refresh() is False
    assert runtime.refresh(force=True) is True
    assert "twin-a" in runtime.plugins


def _call(host: Host, target: Target, lead_id: str = "x") -> Outcome:
    meta = {
        "event_id": "e",
        "type": "lead.created",
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "source": "t",
        "attempt": 1,
    }
    return host.caller.call(
        "lead_created", target, [event_call("lead_created", target.plugin_id, {"id": lead_id}, None, meta)]
    )[0]


def test_a_changed_cache_is_noticed_and_extracted_again(host: Host) -> None:
    host.registry.install(PLUGINS / "twin_a")
    host.registry.grant("twin-a", "lead_access")
    host.registry.enable("twin-a")
    # Another plugin (or a hand edit) appends code to twin-a's cached files on this host.
    sha = host.registry.show("twin-a").versions[0].sha256  # type: ignore[index]
    main = host.config.cache_dir / sha / "main.py"
    main.chmod(0o644)
    main.write_text(main.read_text() + "\nraise RuntimeError('injected')\n")
    runtime = host.runtime
    runtime.refresh(force=True)
    (target,) = runtime.targets("lead_created")
    assert "injected" not in main.read_text()  # the reviewed code again, from the database
    assert _call(host, target).result["who"] == "twin-a"


def test_one_plugin_failing_to_load_never_stops_the_others(host: Host, tmp_path: Path) -> None:
    marker = tmp_path / "break-on-import"
    broken = write_plugin(
        tmp_path / "fragile",
        manifest_for("Fragile"),
        f"import pathlib\nif pathlib.Path({str(marker)!r}).exists():\n    raise RuntimeError('corrupt')\n"
        + LEAD_MAIN,
    )
    for folder in (broken, PLUGINS / "twin_b"):
        pid = host.registry.install(folder).plugin.id
        host.registry.grant(pid, "lead_access")
        host.registry.enable(pid)
    marker.write_text("")  # from now on, fragile's import fails on this host
    runtime = host.runtime
    runtime.refresh(force=True)
    outcomes = {t.plugin_id: _call(host, t) for t in runtime.targets("lead_created")}
    assert outcomes["twin-b"].ok
    assert outcomes["fragile"].status == "error"
    assert "could not be loaded" in (outcomes["fragile"].error or "")
    assert "RuntimeError: corrupt" in (outcomes["fragile"].error or "")


def test_a_host_that_never_saw_a_plugin_materialises_it_from_the_database(host: Host) -> None:
    host.registry.install(PLUGINS / "twin_a")
    host.registry.grant("twin-a", "lead_access")
    host.registry.enable("twin-a")
    shutil.rmtree(host.config.cache_dir)  # a fresh machine: nothing on disk
    runtime = host.runtime
    runtime.refresh()
    (target,) = runtime.targets("lead_created")
    assert _call(host, target).result["who"] == "twin-a"
    assert target.code is not None
    assert (host.config.cache_dir / target.code.sha256 / "main.py").is_file()


def test_upgrade_reloads_the_new_code(host: Host, tmp_path: Path) -> None:
    v1 = write_plugin(tmp_path / "v1", manifest_for(version="1.0.0"), LEAD_MAIN.replace("success", "v1"))
    v2 = write_plugin(tmp_path / "v2", manifest_for(version="2.0.0"), LEAD_MAIN.replace("success", "v2"))
    host.registry.install(v1)
    host.registry.grant("test-plugin", "lead_access")
    host.registry.enable("test-plugin")
    runtime = host.runtime
    runtime.refresh()
    assert _call(host, runtime.targets("lead_created")[0]).result["status"] == "v1"
    host.registry.upgrade("test-plugin", v2)
    runtime.refresh()
    assert _call(host, runtime.targets("lead_created")[0]).result["status"] == "v2"


@contextlib.contextmanager
def _extracting_while(
    host: Host, meanwhile: Callable[[Path, Callable[[], Path]], None]
) -> Iterator[tuple[Session, PluginVersion]]:
    """twin-a installed, absent from the cache, and ``meanwhile(target, extract)`` run by
    "another process" after this one has extracted its own copy and before it puts it in
    place (``extract()`` makes that other process's copy)."""
    host.registry.install(PLUGINS / "twin_a")
    codes = host.codes
    real_extract = codes.extract
    with host.db.session() as s:
        version = s.scalars(select(PluginVersion).where(PluginVersion.plugin_id == "twin-a")).one()
        codes.remove(version.sha256)

        def extract(data: bytes) -> Path:
            mine = real_extract(data)
            meanwhile(host.config.cache_dir / version.sha256, lambda: real_extract(data))
            return mine

        codes.extract = extract  # type: ignore[method-assign]
        try:
            yield s, version
        finally:
            codes.extract = real_extract  # type: ignore[method-assign]


def test_a_copy_another_process_put_in_place_meanwhile_is_used_not_removed(host: Host) -> None:
    """Two pool processes of one host may both find a plugin missing from the cache and both
    extract it. The second must not remove the first's copy, which that process may be loading
    from at this moment (a worker once logged 'names no module' for a plugin it was loading)."""
    theirs: dict[str, int] = {}

    def another_process_finishes_first(target: Path, extract: Callable[[], Path]) -> None:
        os.rename(extract(), target)
        theirs["inode"] = target.stat().st_ino
        theirs["fd"] = os.open(target / "main.py", os.O_RDONLY)  # and is reading from it

    with _extracting_while(host, another_process_finishes_first) as (s, version):
        target = host.codes.folder(s, version)
    os.close(theirs["fd"])
    assert target.stat().st_ino == theirs["inode"], "the copy another process was using was replaced"
    assert (target / "main.py").is_file()
    assert list(host.codes.staging().iterdir()) == [], "a staged copy was left behind"


def test_a_tampered_copy_put_in_place_meanwhile_is_moved_aside_and_replaced(host: Host) -> None:
    def a_tampered_copy_appears(target: Path, _extract: Callable[[], Path]) -> None:
        target.mkdir()
        (target / "main.py").write_text("raise RuntimeError('injected')\n")

    with _extracting_while(host, a_tampered_copy_appears) as (s, version):
        target = host.codes.folder(s, version)
    assert "injected" not in (target / "main.py").read_text()
    assert (target / "manifest.json").is_file()
    assert list(host.codes.staging().iterdir()) == [], "a staged or stale copy was left behind"
