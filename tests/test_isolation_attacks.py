"""Attack plugins (tests/data/attacks/*) under the default mode fail, with their own result
showing what they could not do; under ``inline`` the same attacks succeed (the threat model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services_ai_plugins.host import Host
from services_ai_plugins.pipeline.processor import Incoming
from tests.helpers import DATA, SECRET_KEY, make_config

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
