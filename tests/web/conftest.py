"""The web app in process (Starlette's test client), on a fresh SQLite host per test, with an
admin and a viewer user and one token of each scope."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services_ai_plugins.host import Host
from services_ai_plugins.lifecycle.packaging import package_dir
from services_ai_plugins.web.app import create_app
from tests.helpers import SAMPLE_PLUGIN

ADMIN_PASSWORD = "correct horse battery"
VIEWER_PASSWORD = "viewer password 1"
_TOKEN_FIELD = re.compile(r'name="csrftoken" value="([^"]+)"')


@dataclass
class Web:
    host: Host
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def bearer(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def new_client(self) -> TestClient:
        return TestClient(self.client.app, base_url="https://testserver")


def csrf_of(html: str) -> str:
    found = _TOKEN_FIELD.search(html)
    assert found, "the page has no CSRF field"
    return found[1]


def login(client: TestClient, name: str, password: str) -> str:
    """Log in through the form; the page's CSRF token for later forms."""
    token = csrf_of(client.get("/login").text)
    answer = client.post(
        "/login", data={"csrftoken": token, "name": name, "password": password, "next": "/plugins"}
    )
    assert answer.status_code == 200 and answer.url.path == "/plugins", answer.text[:500]
    return csrf_of(answer.text)  # the session's token, in the page's log-out form


@pytest.fixture
def web(sqlite_host: Host) -> Iterator[Web]:
    host = Host(sqlite_host.config, sqlite_host.db, tasks="inline")
    host.accounts.create_user("admin", ADMIN_PASSWORD, "admin", actor="test")
    host.accounts.create_user("viewer", VIEWER_PASSWORD, "viewer", actor="test")
    app = create_app(host)
    client = TestClient(app, base_url="https://testserver")
    tokens = {
        scope: host.accounts.create_token(scope, f"test {scope}", actor="test")[1]
        for scope in ("admin", "dashboard", "publish")
    }
    yield Web(host, client, tokens)
    client.close()
    host.close()


@pytest.fixture
def admin(web: Web) -> tuple[TestClient, str]:
    """A client logged in as the admin, and its CSRF token."""
    return web.client, login(web.client, "admin", ADMIN_PASSWORD)


@pytest.fixture(scope="session")
def sample_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return package_dir(SAMPLE_PLUGIN)


def path_of(tmp: Path, data: bytes) -> Path:
    path = tmp / "plugin.zip"
    path.write_bytes(data)
    return path
