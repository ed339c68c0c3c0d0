"""``services-ai plugin new NAME``: a small, working plugin with a test, ready to change."""

from __future__ import annotations

import json
import re
from pathlib import Path

from schemas.manifest import parse_manifest, slugify
from services_ai_plugins.errors import ArchiveError, ManifestError

_FUNCTIONS = '''"""{name}: hook implementations."""

from services_ai_plugins import hookimpl


@hookimpl
def lead_created(lead, context):
    """Called for every new lead once the lead_access permission is granted."""
    greeting = context["settings"]["greeting"]
    context["logger"].info("lead %s received", lead["id"])
    return {{"status": "success", "message": f"{{greeting}}, {{lead.get('name') or 'new lead'}}"}}


@hookimpl
def dashboard_widget(plugin_id, context):
    """HTML for the dashboard (Bootstrap 5 classes); sanitised by the host."""
    return {{
        "title": "{name}",
        "html": "<div class='card-body'><p class='mb-0'>Hello from {name}</p></div>",
        "refresh_interval": 300,
    }}
'''

_CLASS = '''"""{name}: hook implementations on a class (named by plugin_class in manifest.json)."""

from services_ai_plugins import hookimpl


class {cls}:
    @hookimpl
    def lead_created(self, lead, context):
        """Called for every new lead once the lead_access permission is granted."""
        greeting = context["settings"]["greeting"]
        context["logger"].info("lead %s received", lead["id"])
        return {{"status": "success", "message": f"{{greeting}}, {{lead.get('name') or 'new lead'}}"}}

    @hookimpl
    def dashboard_widget(self, plugin_id, context):
        """HTML for the dashboard (Bootstrap 5 classes); sanitised by the host."""
        return {{
            "title": "{name}",
            "html": "<div class='card-body'><p class='mb-0'>Hello from {name}</p></div>",
            "refresh_interval": 300,
        }}
'''

_TEST = '''"""Tests for {name}: run with python -m pytest {folder}."""

from pathlib import Path

from services_ai_plugins.testing import PluginHarness

PLUGIN = Path(__file__).resolve().parent.parent


def test_lead_created_greets_the_lead():
    with PluginHarness(PLUGIN) as plugin:
        result = plugin.call("lead_created", lead={{"id": "l1", "name": "Ada"}})
    assert result == {{"status": "success", "message": "Hello, Ada"}}


def test_greeting_is_a_setting():
    with PluginHarness(PLUGIN, settings={{"greeting": "Welcome"}}) as plugin:
        result = plugin.call("lead_created", lead={{"id": "l2"}})
    assert result["message"] == "Welcome, new lead"


def test_widget_has_a_title():
    with PluginHarness(PLUGIN) as plugin:
        widget = plugin.call("dashboard_widget")
    assert widget["title"] == "{name}"
'''


def create(name: str, parent: Path, style: str = "functions") -> Path:
    """Write the plugin folder and return it. Refuses to overwrite anything."""
    slug = slugify(name)
    if not slug:
        raise ManifestError("name", f"{name!r} needs at least one letter or digit")
    folder = parent / slug.replace("-", "_")
    if folder.exists():
        raise ArchiveError("already exists; choose another name or folder", str(folder))
    manifest: dict[str, object] = {
        "name": name,
        "version": "0.1.0",
        "description": f"{name} plugin for Services AI",
        "author": "Your Name",
        "email": "you@example.com",
        "entry_point": "main",
        "requires_python": ">=3.11",
        "permissions": [
            {"name": "lead_access", "description": "Greets new leads"},
            {"name": "dashboard_widget", "description": "Shows a greeting on the dashboard"},
        ],
        "settings": [
            {
                "name": "greeting",
                "type": "text",
                "label": "Greeting",
                "default": "Hello",
                "description": "Word used to greet each lead",
            }
        ],
        "hooks": ["lead_created", "dashboard_widget"],
    }
    cls = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part) or "Plugin"
    if not cls[0].isalpha():
        cls = "Plugin" + cls
    if style == "class":
        manifest["plugin_class"] = cls
        code = _CLASS.format(name=name, cls=cls)
    else:
        code = _FUNCTIONS.format(name=name)
    parse_manifest(manifest)  # the scaffold must itself be valid
    (folder / "tests").mkdir(parents=True)
    (folder / "__init__.py").write_text(f'"""{name} plugin for Services AI."""\n', encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (folder / "main.py").write_text(code, encoding="utf-8")
    (folder / "tests" / "__init__.py").write_text("", encoding="utf-8")
    (folder / "tests" / "test_plugin.py").write_text(
        _TEST.format(name=name, folder=folder.name), encoding="utf-8"
    )
    return folder
