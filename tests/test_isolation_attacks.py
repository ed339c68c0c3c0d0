"""Attack plugins (tests/data/attacks/*) under the default mode fail, with their own result
showing what they could not do; under ``inline`` the same attacks succeed (the threat model)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import services_ai_plugins
from services_ai_plugins.calling.sandbox.protections import can_switch_users
from services_ai_plugins.host import Host
from services_ai_plugins.pipeline.processor import Incoming
from tests.helpers import DATA, SECRET_KEY, make_config, manifest_for, write_plugin

ATTACKS = DATA / "attacks"


@pytest.fixture(params=["process", "inline"])
def host(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Host]:
    monkeypatch.setenv("SERVICES_AI_SECRET_KEY", SECRET_KEY)
    h = Host(
        make_config(tmp_path / "data", database_url, plugin_isolation=request.param, plugin_time_limit=2.0)
    ).ready()
    yield h
    h.close()


def _run(host: Host, name: str) -> dict:
    plugin_id = host.registry.install(ATTACKS / name).plugin.id
    host.registry.grant(plugin_id, "lead_access")
    host.registry.enable(plugin_id)
    host.processor.process([Incoming({"type": "lead.created", "event_id": "e1", "data": {"id": "L1"}})])
    return next(r for r in host.events.show("e1")["results"] if r["plugin_id"] == plugin_id)


def test_reading_the_hosts_environment(host: Host) -> None:
    result = _run(host, "snoop")["result"]
    if host.config.plugin_isolation == "process":
        assert result["read_env"] == "denied: not in its environment"
        assert (
            result["read_parent_environ"].startswith("denied:")
            or result["read_parent_environ"] == "got: no secret"
        )
    else:  # inline does not prevent it
        assert result["read_env"] == "got: " + SECRET_KEY
        assert result["read_parent_environ"] == "got: no secret" or result["read_parent_environ"].startswith(
            "got:"
        )


# -- the hostile plugin: many tries in one call -------------------------------------------------

BYSTANDER = """
from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    return {"status": "success", "saw": lead.get("email")}
"""


@pytest.fixture
def db_socket() -> Iterator[str]:
    """A unix socket in /run that anyone may connect to, as a local database's is."""
    import socket
    import uuid

    path = f"/run/sai-attack-{uuid.uuid4().hex[:8]}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(8)
    yield path
    server.close()
    os.unlink(path)


def _hostile(host: Host, tmp_path: Path, db_socket: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, str]:
    from services_ai_plugins.lifecycle import runtime

    original = runtime.can_call
    monkeypatch.setattr(runtime, "can_call", original)  # put back whatever inline does
    # Another plugin that declares lead_created but was not granted lead_access.
    bystander = host.registry.install(
        write_plugin(tmp_path / "bystander", manifest_for("bystander"), BYSTANDER)
    ).plugin.id
    host.registry.enable(bystander)
    sha = next(v.sha256 for v in host.registry.show(bystander).versions or [] if v.current)
    other_code = host.codes.root / sha
    assert other_code.is_dir()
    plugin_id = host.registry.install(ATTACKS / "hostile").plugin.id
    host.registry.grant(plugin_id, "lead_access")
    host.registry.enable(plugin_id)
    where = {
        "database_file": str(host.db.engine.url.database) if host.db.dialect == "sqlite" else "/nonexistent",
        "postgres_socket": db_socket,
        "other_code": str(other_code),
        "host_code": str(Path(services_ai_plugins.__file__).parent),
    }
    host.processor.process(
        [
            Incoming(
                {
                    "type": "lead.created",
                    "event_id": "h1",
                    "data": {"id": "L1", "custom_fields": {"attack": where}},
                }
            )
        ]
    )
    result = next(r for r in host.events.show("h1")["results"] if r["plugin_id"] == plugin_id)
    # A second event: had the gate been replaced in the host, the bystander would see it.
    host.processor.process(
        [Incoming({"type": "lead.created", "event_id": "h2", "data": {"id": "L2", "email": "a@b.example"}})]
    )
    seen = {r["plugin_id"] for r in host.events.show("h2")["results"]}
    assert bystander not in seen  # the host's targets are computed per registry revision
    return result, ("host's gate replaced" if runtime.can_call is not original else "host's gate intact")


def test_a_hostile_plugin_is_stopped_at_each_try(
    host: Host, tmp_path: Path, db_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves: in its sandbox a plugin cannot read the host's secrets (environment, its parent's
    environment, host objects, the database file), cannot reach a database (TCP or a unix socket
    in /run), cannot write its own, another plugin's or the host's code or leave files in the
    shared /dev/shm and /var/tmp, cannot fork or signal the host, and replacing the permission gate
    changes nothing outside its sandbox. Inline, the same tries succeed (what that mode trusts)."""
    result, gate = _hostile(host, tmp_path, db_socket, monkeypatch)
    r = result["result"]
    planted = [
        Path(v.removeprefix("got: "))
        for k, v in r.items()
        if k.startswith("write_") and isinstance(v, str) and v.startswith("got: ")
    ]
    try:
        if host.config.plugin_isolation == "process":
            assert result["status"] == "success", result
            denied = {k: v for k, v in r.items() if isinstance(v, str) and v.startswith("denied:")}
            expected = {
                "env_secret",
                "env_database",
                "parent_environ",
                "host_objects",
                "database_file",
                "postgres_tcp",
                "redis_tcp",
                "postgres_socket",
                "write_own_code",
                "write_other_code",
                "write_host_code",
                "write_dev_shm",
                "write_var_tmp",
                "fork",
            }
            if can_switch_users():
                expected.add("signal_parent")  # another user may not signal the host
            assert expected <= set(denied), {k: r[k] for k in expected - set(denied)}
            assert "thread" not in denied or "Runtime" in denied["thread"]
            # What it may do stays inside: its own timer is not the host's clock, and its
            # replaced gate is its own process's.
            assert r["replace_gate"].startswith("got:") and gate == "host's gate intact"
            assert not planted
        else:  # inline: the same plugin, trusted, gets all of it
            got = {k for k, v in r.items() if isinstance(v, str) and v.startswith("got:")}
            assert {
                "env_secret",
                "host_objects",
                "postgres_tcp",
                "redis_tcp",
                "postgres_socket",
                "write_other_code",
                "write_host_code",
                "fork",
                "replace_gate",
            } <= got, r
            assert gate == "host's gate replaced"  # in force from the next registry change
    finally:
        for path in planted:
            path.unlink(missing_ok=True)


# -- time, memory and what outlives a call ------------------------------------------------------


def _trick(host: Host, event_id: str, trick: str, notes: str = "") -> dict:
    plugin_id = "tricks"
    if host.registry.plugins() == []:
        host.registry.install(ATTACKS / "tricks")
        host.registry.grant(plugin_id, "lead_access")
        host.registry.enable(plugin_id)
    data = {"id": event_id, "source": trick, "notes": notes}
    host.processor.process([Incoming({"type": "lead.created", "event_id": event_id, "data": data})])
    return next(r for r in host.events.show(event_id)["results"] if r["plugin_id"] == plugin_id)


def test_a_plugin_cannot_switch_its_time_limit_off(host: Host) -> None:
    """Proves: timers off, SIGALRM and SIGTERM ignored, a 30 s sleep against a 2 s limit is
    stopped by the host on the wall clock and stored as a timeout; inline a 3 s one runs to its
    end and is stored as a success."""
    process = host.config.plugin_isolation == "process"
    started = time.monotonic()
    result = _trick(host, "t1", "timer", notes="30" if process else "3")
    took = time.monotonic() - started
    if process:
        assert result["status"] == "timeout", result
        assert took < 25, took  # stopped by the host, long before the plugin would return
        # Its sandbox was replaced: the next call is served at once.
        again = _trick(host, "t2", "timer", notes="0")
        assert again["status"] == "success", again
    else:
        assert result["status"] == "success" and took >= 3.0, (result, took)


def test_a_plugin_cannot_take_4_gb(host: Host) -> None:
    """Proves: the sandbox's memory limit (512 MB) refuses 4 GB; inline there is none (600 MB,
    past the sandbox's limit and quick to zero, is granted)."""
    size = 4 * 1024**3 if host.config.plugin_isolation == "process" else 600 * 1024**2
    result = _trick(host, "m1", "memory", notes=str(size))
    assert result["status"] == "success", result
    if host.config.plugin_isolation == "process":
        assert result["result"]["memory"] == "denied: MemoryError"
    else:
        assert result["result"]["memory"] == f"got: {size} bytes"


def test_nothing_a_plugin_starts_outlives_its_call(host: Host, tmp_path: Path) -> None:
    """Proves: in its sandbox a plugin can start neither a thread nor a process; inline, both
    run on after the hook has returned."""
    marker = tmp_path / "lingered"
    result = _trick(host, "l1", "linger", notes=str(marker))["result"]
    if host.config.plugin_isolation == "process":
        assert result["thread"].startswith("denied:") and result["child"].startswith("denied:"), result
        time.sleep(1.5)
        assert not marker.exists()
    else:
        assert (result["thread"], result["child"]) == ("got: started", "got: forked")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            marker.exists() and marker.read_text().count("still running") == 2
        ):
            time.sleep(0.1)
        assert marker.read_text().count("still running") == 2
