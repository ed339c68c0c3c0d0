"""The documentation holds to the code, read from the live plugin manager and ``Config``: every
hook has its README section with the arguments its spec takes, a test and a permission entry;
every setting of ``Config`` is in the README's configuration table with its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services_ai_plugins.calling.loader import new_plugin_manager
from services_ai_plugins.calling.permissions import HOOK_PERMISSIONS
from services_ai_plugins.config import Config
from tests.helpers import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
HOOK_TESTS = (Path(__file__).parent / "test_hooks.py").read_text(encoding="utf-8")
#: Read by the CLI alone (who acts, tracebacks), not part of the host's configuration.
CLI_ONLY = {"SERVICES_AI_ACTOR", "SERVICES_AI_DEBUG"}


def live_hooks() -> dict[str, tuple[str, ...]]:
    pm = new_plugin_manager()
    return {
        name: tuple(caller.spec.argnames)
        for name, caller in vars(pm.hook).items()
        if not name.startswith("_") and getattr(caller, "spec", None) is not None
    }


def test_the_plugin_manager_has_the_hooks_of_the_spec() -> None:
    assert set(live_hooks()) == set(HOOK_PERMISSIONS)


@pytest.mark.parametrize("hook", sorted(live_hooks()))
def test_every_hook_has_a_readme_section_with_its_arguments(hook: str) -> None:
    found = re.findall(rf"^#### `{hook}\(([^)]*)\)`", README, re.M)
    assert found, f"README has no '#### `{hook}(...)`' section"
    documented = tuple(a.strip() for a in found[0].split(",") if a.strip())
    assert documented == live_hooks()[hook], f"README documents {hook}{documented}"


@pytest.mark.parametrize("hook", sorted(live_hooks()))
def test_every_hook_has_a_test_and_a_permission_entry(hook: str) -> None:
    assert re.search(rf"^def test_hook_{hook}\(", HOOK_TESTS, re.M), (
        f"tests/test_hooks.py has no test_hook_{hook}"
    )
    assert hook in HOOK_PERMISSIONS


def _config_rows() -> dict[str, str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `([A-Z_]+)` \| ([^|]*) \|", line)
        if m:
            rows[m[1]] = m[2].strip()
    return rows


def _env_name(name: str, field: object) -> str:
    alias = getattr(field, "validation_alias", None)
    return str(alias) if isinstance(alias, str) else f"SERVICES_AI_{name.upper()}"


def test_the_readme_configuration_table_is_config() -> None:
    rows = _config_rows()
    fields = {_env_name(name, f): f for name, f in Config.model_fields.items()}
    assert set(rows) - CLI_ONLY == set(fields), "README table and Config differ"
    for env, field in fields.items():
        shown = rows[env]
        literal = re.fullmatch(r"`([^`]*)`", shown)
        if field.default is None:
            assert not literal, f"{env}: README shows a default the code does not have"
        elif literal:
            value = field.default
            # A bool as it is written in the environment (``true``, ``false``).
            text = str(value).lower() if isinstance(value, bool) else str(value)
            text = f"{value:g}" if isinstance(value, float) else text
            assert literal[1] == text, f"{env}: README says {literal[1]}, the code {text}"
