"""What used to fail silently now says so: a worker that cannot decrypt a plugin's secrets stores
its calls as failed with the reason, logs it once and shows it in ``status``; a plugin's failure
is stored and logged with its own frames; a plugin raising ``TransientError`` is really called
again, with backoff, until its last attempt."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from services_ai_plugins.errors import SettingsError
from services_ai_plugins.host import Host
from services_ai_plugins.pipeline.processor import ACK, RETRY, Incoming
from tests.helpers import manifest_for, write_plugin

SECRET_PLUGIN = """
from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    return {"status": "success", "key": len(context["settings"]["api_key"])}

@hookimpl
def dashboard_widget(plugin_id, context):
    return "<p>ok</p>"
"""

FLAKY = """
import pathlib
from services_ai_plugins import TransientError, hookimpl
COUNT = pathlib.Path({count!r})

@hookimpl
def lead_created(lead, context):
    n = int(COUNT.read_text()) + 1 if COUNT.exists() else 1
    COUNT.write_text(str(n))
    if n < {succeed_on}:
        raise TransientError(f"CRM busy (try {{n}})")
    return {{"status": "success", "tries": n, "attempt": context["event"]["attempt"]}}
"""


def _lead(i: int, attempt: int = 1) -> Incoming:
    return Incoming({"type": "lead.created", "event_id": f"e{i}", "data": {"id": f"L{i}"}}, attempt=attempt)


def _install_secret_plugin(host: Host, tmp_path: Path) -> None:
    manifest = manifest_for(
        "Keyed",
        hooks=["lead_created", "dashboard_widget"],
        permissions=["lead_access", "dashboard_widget"],
        settings=[{"name": "api_key", "type": "password", "required": True}],
    )
    host.registry.install(write_plugin(tmp_path / "keyed", manifest, SECRET_PLUGIN))
    host.registry.set_settings("keyed", {"api_key": "k-secret"})
    for permission in ("lead_access", "dashboard_widget"):
        host.registry.grant("keyed", permission)
    host.registry.enable("keyed")


def test_a_worker_that_cannot_decrypt_a_plugins_secrets_fails_its_calls_loudly(
    host: Host, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _install_secret_plugin(host, tmp_path)
    # Another worker host whose SERVICES_AI_SECRET_KEY is a different (rotated-away) key.
    worker = Host(host.config.model_copy(update={"secret_key": SecretStr(Fernet.generate_key().decode())}))
    with caplog.at_level(logging.ERROR):
        worker.processor.process([_lead(1), _lead(2)])
        worker.processor.process([_lead(3)])
    for event_id in ("e1", "e2", "e3"):
        (result,) = host.events.show(event_id)["results"]
        assert result["status"] == "error"
        assert "secret setting 'api_key' of plugin keyed cannot be decrypted" in result["error"]
    assert host.events.counts()["failed"] == 3
    logged = [r for r in caplog.records if "cannot be called here" in r.getMessage()]
    assert len(logged) == 1  # once, not once per event
    problems = host.status.collect()["plugins"]["problems"]
    assert "cannot be decrypted" in problems["keyed"]["setup"]["reason"]
    assert host.registry.show("keyed").problems == problems["keyed"]
    # The dashboard refresh says why, too.
    snap = worker.widgets.refresh("keyed")
    assert (snap["status"], snap["ok"]) == ("error", False)
    assert "cannot be decrypted" in (snap["error"] or "")
    worker.close()


def test_a_required_setting_cannot_be_emptied(host: Host, tmp_path: Path) -> None:
    _install_secret_plugin(host, tmp_path)
    manifest = manifest_for("Region", settings=[{"name": "region", "type": "text", "required": True}])
    host.registry.install(
        write_plugin(tmp_path / "region", manifest, SECRET_PLUGIN.split("@hookimpl\ndef dash", maxsplit=1)[0])
    )
    with pytest.raises(SettingsError, match="setting region: is required"):
        host.registry.set_settings("region", {"region": "  "}, from_text=True)
    host.registry.set_settings("region", {"region": "eu"})
    host.registry.enable("region")
    with pytest.raises(SettingsError, match="setting region: is required"):
        host.registry.set_settings("region", {"region": ""}, from_text=True)
    assert host.registry.get_settings("region", "region")[0]["value"] == "eu"


def test_a_failure_is_stored_and_logged_with_the_plugins_own_frames(
    host: Host, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main = (
        "from services_ai_plugins import hookimpl\n"
        "from .scoring import score\n\n"
        "@hookimpl\ndef lead_created(lead, context):\n    return score(lead)\n"
    )
    scoring = "def score(lead):\n    return 1 / len(lead['id'][9:])\n"
    host.registry.install(
        write_plugin(tmp_path / "div", manifest_for("Divider"), main, {"scoring.py": scoring})
    )
    host.registry.grant("divider", "lead_access")
    host.registry.enable("divider")
    with caplog.at_level(logging.WARNING):
        host.processor.process([_lead(1)])
    (result,) = host.events.show("e1")["results"]
    assert result["error"] == "ZeroDivisionError: division by zero (at scoring.py:2 in score)"
    assert [(f["file"], f["line"], f["function"]) for f in result["traceback"]] == [
        ("main.py", 6, "lead_created"),
        ("scoring.py", 2, "score"),
    ]
    assert result["traceback"][1]["text"] == "return 1 / len(lead['id'][9:])"
    # No frame of the host: only the plugin's own files.
    assert all("services_ai_plugins" not in f["file"] for f in result["traceback"])
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("plugin divider")]
    assert "1 of 1 call(s) failed" in line
    assert "scoring.py:2 in score" in line


@pytest.mark.parametrize(("succeed_on", "expected"), [(2, "success"), (9, "error")])
def test_transient_error_is_retried_with_backoff_until_the_last_attempt(
    host: Host, tmp_path: Path, succeed_on: int, expected: str
) -> None:
    count = tmp_path / "count"
    host.registry.install(
        write_plugin(
            tmp_path / "flaky", manifest_for("Flaky"), FLAKY.format(count=str(count), succeed_on=succeed_on)
        )
    )
    host.registry.grant("flaky", "lead_access")
    host.registry.enable("flaky")
    last = host.config.event_max_attempts
    attempt = 1
    while True:
        report = host.processor.process([_lead(1, attempt)])
        (disposition,) = report.dispositions
        if disposition.action == ACK:
            break
        assert disposition.action == RETRY
        assert disposition.attempt == attempt + 1
        assert 0 <= disposition.countdown <= 2 ** (attempt - 1)
        assert host.events.show("e1")["status"] == "pending"  # not done while a retry is due
        attempt = disposition.attempt
    (result,) = host.events.show("e1")["results"]
    assert result["status"] == expected
    assert host.events.show("e1")["status"] == "done"
    if expected == "success":
        assert result["result"]["tries"] == 2
        assert attempt == 2
    else:
        assert attempt == last
        assert result["error"].startswith(
            f"still asking for a retry after {last} attempts: TransientError: CRM busy"
        )
