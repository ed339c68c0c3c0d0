"""Helpers for tests: paths, configuration and plugin folders made on the fly."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

from cryptography.fernet import Fernet

from services_ai_plugins.config import Config

DATA = Path(__file__).parent / "data"
PLUGINS = DATA / "plugins"
REPO = Path(__file__).resolve().parent.parent
SAMPLE_PLUGIN = REPO / "sample_plugin"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET_KEY = Fernet.generate_key().decode()


def make_config(data_dir: Path, database_url: str, **fields: object) -> Config:
    """A configuration for a test (field names, not environment names)."""
    # Unit tests see every registry change at once (tests of the poll interval set their own).
    values: dict[str, object] = {
        "data_dir": data_dir,
        "secret_key": SECRET_KEY,
        "registry_poll_seconds": 1e-6,
        # Plugins called in process: the sandbox executor has tests of its own, and the
        # integration tests run real workers in the default, sandboxed mode.
        "plugin_isolation": "inline",
    }
    values.update(fields)
    return Config(DATABASE_URL=database_url, **values)  # type: ignore[arg-type]


# -- plugins --------------------------------------------------------------------------------


def write_plugin(
    folder: Path,
    manifest: dict[str, object],
    main: str,
    files: dict[str, str] | None = None,
) -> Path:
    """Write a plugin folder for a test (manifest, __init__.py, main.py and any other files)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "__init__.py").write_text("", encoding="utf-8")
    (folder / "main.py").write_text(main, encoding="utf-8")
    for name, content in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return folder


def manifest_for(name: str = "Test Plugin", **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": name,
        "version": "1.0.0",
        "description": "a plugin made by a test",
        "author": "Tester",
        "email": "tester@example.com",
        "hooks": ["lead_created"],
        "permissions": ["lead_access"],
    }
    base.update(fields)
    return base


LEAD_MAIN = """
from services_ai_plugins import hookimpl

@hookimpl
def lead_created(lead, context):
    return {"status": "success", "lead": lead["id"], "settings": context["settings"]}
"""


def zip_generator() -> ModuleType:
    """``tests/data/zips/make_zips.py``, the generator of the accept/reject archive corpus."""
    spec = importlib.util.spec_from_file_location("make_zips", DATA / "zips" / "make_zips.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_zips", module)
    spec.loader.exec_module(module)
    return module
