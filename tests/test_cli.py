"""The ``services-ai`` command line: the contract names, JSON for scripts, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from services_ai_plugins.cli import cli
from services_ai_plugins.config import reset_config
from tests.helpers import PLUGINS, REPO, SAMPLE_PLUGIN, SECRET_KEY


@pytest.fixture
def env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "DATABASE_URL": database_url,
        "SERVICES_AI_DATA_DIR": str(tmp_path / "data"),
        "SERVICES_AI_SECRET_KEY": SECRET_KEY,
        "SERVICES_AI_ACTOR": "cli-test",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    reset_config()
    return values


def run(*args: str, ok: bool = True) -> tuple[int, str, str]:
    reset_config()
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.exit_code, result.stdout, result.stderr


def test_plugin_lifecycle_through_the_cli(env: dict[str, str]) -> None:
    run("db", "upgrade")
    assert "already at migration" in run("db", "upgrade")[1]
    run("plugin", "install", str(SAMPLE_PLUGIN))
    listed = json.loads(run("plugin", "list", "--json")[1])
    assert [(p["id"], p["name"], p["version"], p["enabled"]) for p in listed] == [
        ("lead-insights", "Lead Insights", "1.0.0", False)
    ]
    assert listed[0]["permissions"] == {
        "booking_access": False,
        "dashboard_widget": False,
        "data_export": False,
        "lead_access": False,
    }
    run("plugin", "grant", "lead-insights", "lead_access")
    run("plugin", "enable", "lead-insights")
    run("plugin", "config", "set", "lead-insights", "min_score", "70")
    run("plugin", "config", "set", "lead-insights", "api_key", "sk-very-secret")
    shown = json.loads(run("plugin", "show", "lead-insights", "--json")[1])
    assert shown["enabled"] is True
    assert shown["permissions"]["lead_access"] is True
    settings = {s["name"]: s["value"] for s in shown["settings"]}
    assert settings["min_score"] == 70
    assert settings["api_key"] == "********"
    got = json.loads(run("plugin", "config", "get", "lead-insights", "--json")[1])
    assert got["api_key"] == "********"
    # The secret is never printed in clear by any command.
    for args in (("plugin", "show", "lead-insights"), ("plugin", "config", "get", "lead-insights")):
        assert "sk-very-secret" not in run(*args)[1]
    run("plugin", "revoke", "lead-insights", "lead_access")
    run("plugin", "disable", "lead-insights")
    run("plugin", "uninstall", "lead-insights")
    assert json.loads(run("plugin", "list", "--json")[1]) == []


def test_errors_are_one_line_with_a_meaningful_exit_status(env: dict[str, str], tmp_path: Path) -> None:
    run("db", "upgrade")
    code, out, err = run("plugin", "enable", "ghost", ok=False)
    assert code == 4
    assert err.strip() == "error: plugin ghost: is not installed (see: services-ai plugin list)"
    run("plugin", "install", str(PLUGINS / "readme_style"))
    code, _, err = run("plugin", "grant", "readme-style", "data_export", ok=False)
    assert code == 3
    assert err.count("\n") == 1 and "does not declare it" in err
    code, _, err = run("plugin", "config", "set", "readme-style", "setting_name", "a\nb", ok=False)
    assert code == 65 and "a text setting takes a single line" in err
    bad = tmp_path / "bad.zip"
    bad.write_text("this is not a zip")
    code, _, err = run("plugin", "install", str(bad), ok=False)
    assert code == 65 and err.startswith("error: ") and "Traceback" not in err


def test_new_validate_package_install(env: dict[str, str], tmp_path: Path) -> None:
    run("plugin", "new", "Lead Greeter", "--dir", str(tmp_path), "--style", "class")
    folder = tmp_path / "lead_greeter"
    assert "valid: lead-greeter 0.1.0" in run("plugin", "validate", str(folder))[1]
    out_zip = tmp_path / "lg.zip"
    run("plugin", "package", str(folder), "-o", str(out_zip))
    with zipfile.ZipFile(out_zip) as zf:
        assert {"manifest.json", "main.py", "__init__.py"} <= set(zf.namelist())
    run("plugin", "install", str(out_zip))
    assert json.loads(run("plugin", "show", "lead-greeter", "--json")[1])["version"] == "0.1.0"
    # The scaffold's own tests pass as written.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_sample_plugin_packages_and_installs(env: dict[str, str], tmp_path: Path) -> None:
    out_zip = tmp_path / "sample.zip"
    run("plugin", "package", str(SAMPLE_PLUGIN), "-o", str(out_zip))
    run("plugin", "install", str(out_zip))
    assert json.loads(run("plugin", "list", "--json")[1])[0]["id"] == "lead-insights"


def test_console_script_runs_as_installed(tmp_path: Path, sqlite_template: Path) -> None:
    """The real ``services-ai`` executable: exit status and stderr as scripts see them."""
    exe = Path(sys.executable).parent / "services-ai"
    env = {**os.environ, "SERVICES_AI_DATA_DIR": str(tmp_path / "d"), "SERVICES_AI_SECRET_KEY": SECRET_KEY}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [str(exe), "plugin", "list", "--json"], env=env, capture_output=True, text=True, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    done = subprocess.run(
        [str(exe), "plugin", "show", "nope", "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 4
    assert done.stdout == ""
    assert done.stderr.strip() == "error: plugin nope: is not installed (see: services-ai plugin list)"


@pytest.mark.parametrize(("command", "shows"), [("worker", "--concurrency"), ("beat", "--schedule")])
def test_worker_and_beat_take_h_for_celerys_own_help(command: str, shows: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services_ai_plugins.cli", command, "-h"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert shows in done.stdout


def test_event_types_are_taken_dotted_or_hyphenated(env: dict[str, str]) -> None:
    run("db", "upgrade")
    first = run("publish", "lead.created", "--data", '{"id": "L1"}')[1].strip()
    second = run("publish", "lead-created", "--data", '{"id": "L2"}')[1].strip()
    assert first != second
    assert run("events", "list", "--type", "lead-created", "--json")[1].strip() == "[]"  # none taken yet
    code, _, err = run("publish", "lead.deleted", "--data", "{}", ok=False)
    assert code == 2  # a command typed wrong: click's usage error
    assert "'lead.deleted' is not an event type" in err


def test_revoking_an_undeclared_permission_says_so(env: dict[str, str]) -> None:
    run("db", "upgrade")
    run("plugin", "install", str(PLUGINS / "readme_style"))
    code, _, err = run("plugin", "revoke", "readme-style", "booking_access", ok=False)
    assert code == 3
    assert err.startswith(
        "error: plugin readme-style: booking_access cannot be revoked: its manifest does not declare it"
    )
