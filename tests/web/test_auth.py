"""Who may do what: tokens and their scopes, users and their roles, sessions, CSRF, the
login rate limit, and the user and token commands."""

from __future__ import annotations

import re
import time

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from services_ai_plugins.cli import cli
from services_ai_plugins.config import reset_config
from tests.web.conftest import ADMIN_PASSWORD, VIEWER_PASSWORD, Web, csrf_of, login

LEAD = {"type": "lead.created", "data": {"id": "L-1"}}


def _status(answer) -> int:
    return answer.status_code


def test_every_api_endpoint_needs_credentials(web: Web) -> None:
    client = web.new_client()
    for method, path in [
        ("GET", "/openapi.json"),
        ("GET", "/api/v1/plugins"),
        ("GET", "/api/v1/plugins/x"),
        ("POST", "/api/v1/plugins"),
        ("POST", "/api/v1/events"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/widgets"),
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/exports"),
        ("GET", "/api/v1/dead-letters"),
    ]:
        answer = client.request(method, path)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["error"] == "AuthenticationError"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer nope",
        "Bearer sai_" + "x" * 43,
        "Basic YWRtaW46cGFzcw==",
        "Bearer",
        "Bearer " + "sai_" * 100,
        "sai_abc",
    ],
)
def test_a_wrong_or_malformed_token_is_401(web: Web, header: str) -> None:
    answer = web.new_client().get("/api/v1/plugins", headers={"Authorization": header})
    assert answer.status_code == 401 and answer.json()["detail"]


def test_each_scope_opens_only_its_part(web: Web) -> None:
    client = web.new_client()
    expect = {
        # scope: (plugins list, widgets, publish, status)
        "admin": (200, 200, 403, 200),
        "dashboard": (403, 200, 403, 403),
        "publish": (403, 403, 202, 403),
    }
    for scope, (plugins, widgets, publish, status) in expect.items():
        auth = web.bearer(scope)
        got = (
            _status(client.get("/api/v1/plugins", headers=auth)),
            _status(client.get("/api/v1/widgets", headers=auth)),
            _status(client.post("/api/v1/events", headers=auth, json=LEAD)),
            _status(client.get("/api/v1/status", headers=auth)),
        )
        assert got == (plugins, widgets, publish, status), scope
    refused = client.get("/api/v1/plugins", headers=web.bearer("dashboard")).json()
    assert refused["error"] == "AccessDeniedError" and "admin token" in refused["detail"]


def test_a_revoked_token_is_refused_once_the_cache_second_is_up(web: Web) -> None:
    """A web process reuses a token check for ``web_cache_seconds`` (1 s): a token revoked
    (with the CLI, in another process) is refused from then on."""
    client = web.new_client()
    view, secret = web.host.accounts.create_token("admin", "short-lived")
    auth = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/plugins", headers=auth).status_code == 200
    web.host.accounts.revoke_token(view.id)
    time.sleep(web.host.config.web_cache_seconds)
    assert client.get("/api/v1/plugins", headers=auth).status_code == 401


def test_tokens_are_stored_hashed_and_shown_once(web: Web) -> None:
    from sqlalchemy import select

    from services_ai_plugins.infra.models import ApiToken

    with web.host.db.session() as s:
        stored = [(t.token_sha256, t.prefix) for t in s.scalars(select(ApiToken))]
    for secret in web.tokens.values():
        assert all(secret != digest and secret not in digest for digest, _ in stored)
        assert any(secret.startswith(prefix) and len(prefix) < len(secret) // 3 for _, prefix in stored)
    listed = web.host.accounts.tokens()
    assert not any(secret in repr(listed) for secret in web.tokens.values())


def test_static_files_login_and_health_are_the_only_open_paths(web: Web) -> None:
    client = web.new_client()
    assert client.get("/healthz").text == "ok"
    assert client.get("/static/bootstrap/css/bootstrap.min.css").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/login").status_code == 200
    assert client.get("/", follow_redirects=False).headers["location"] == "/dashboard"
    for page in (
        "/plugins",
        "/plugins/x",
        "/dashboard",
        "/events",
        "/dead-letters",
        "/exports",
        "/ops",
        "/audit",
        "/docs",
    ):
        answer = client.get(page, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), page


def test_logging_in_sets_a_hardened_session_cookie(web: Web) -> None:
    client = web.new_client()
    token = csrf_of(client.get("/login").text)
    answer = client.post(
        "/login",
        data={"csrftoken": token, "name": "admin", "password": ADMIN_PASSWORD},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    assert ADMIN_PASSWORD.lower() not in cookie


def test_a_wrong_password_and_an_unknown_user_read_the_same(web: Web) -> None:
    client = web.new_client()
    token = csrf_of(client.get("/login").text)
    wrong = client.post("/login", data={"csrftoken": token, "name": "admin", "password": "not it at all"})
    unknown = client.post("/login", data={"csrftoken": token, "name": "nobody", "password": "not it at all"})
    assert wrong.status_code == unknown.status_code == 401
    said = [re.search(r'alert-danger" role="alert">([^<]+)', a.text)[1] for a in (wrong, unknown)]  # type: ignore[index]
    assert said[0] == said[1] == "wrong user name or password"


def test_failed_logins_are_rate_limited(web: Web) -> None:
    client = web.new_client()
    token = csrf_of(client.get("/login").text)
    limit = web.host.config.login_max_failures
    for _ in range(limit):
        assert (
            client.post(
                "/login", data={"csrftoken": token, "name": "admin", "password": "guess guess"}
            ).status_code
            == 401
        )
    blocked = client.post("/login", data={"csrftoken": token, "name": "admin", "password": ADMIN_PASSWORD})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "too many failed logins" in blocked.text
    other = web.new_client()
    login(other, "viewer", VIEWER_PASSWORD)  # another name is not held up by the first one's failures


def test_login_never_redirects_off_site(web: Web) -> None:
    client = web.new_client()
    token = csrf_of(client.get("/login").text)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        answer = client.post(
            "/login",
            data={"csrftoken": token, "name": "admin", "password": ADMIN_PASSWORD, "next": target},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/dashboard", target
        token = csrf_of(client.get("/plugins").text)
        client.post("/logout", data={"csrftoken": token})
        token = csrf_of(client.get("/login").text)


def test_forms_without_the_sessions_csrf_token_are_refused(web: Web, admin) -> None:
    client, token = admin
    for data in ({}, {"csrftoken": "forged"}, {"csrftoken": token + "x"}):
        answer = client.post("/plugins/x/enable", data=data)
        assert answer.status_code == 403 and "security token" in answer.text
    # The same token from another session is no good either.
    other = web.new_client()
    login(other, "admin", ADMIN_PASSWORD)
    assert other.post("/plugins/x/enable", data={"csrftoken": token}).status_code == 403
    # A script on the page sends it as a header.
    answer = client.post("/api/v1/widgets/x/refresh", headers={"X-CSRFToken": token})
    assert answer.status_code == 404  # past the check: there is no such plugin
    assert client.post("/api/v1/widgets/x/refresh").status_code == 403
    # The login form needs it too (logging a victim in as the attacker is an attack).
    fresh = web.new_client()
    assert fresh.post("/login", data={"name": "admin", "password": ADMIN_PASSWORD}).status_code == 403


def test_a_viewer_reads_but_cannot_act(web: Web) -> None:
    client = web.new_client()
    token = login(client, "viewer", VIEWER_PASSWORD)
    assert client.get("/plugins").status_code == 200
    assert client.get("/api/v1/plugins").status_code == 200
    assert client.get("/dashboard").status_code == 200
    assert client.post("/plugins/x/enable", data={"csrftoken": token}).status_code == 403
    assert client.get("/plugins/upload").status_code == 403
    assert client.post("/api/v1/plugins/x/enable", headers={"X-CSRFToken": token}).status_code == 403
    assert "Upload a plugin" not in client.get("/plugins").text


def test_a_password_change_or_a_deleted_user_ends_their_sessions(web: Web) -> None:
    client = web.new_client()
    login(client, "viewer", VIEWER_PASSWORD)
    assert client.get("/api/v1/plugins").status_code == 200
    web.host.accounts.set_password("viewer", "a brand new password")
    assert client.get("/api/v1/plugins").status_code == 401
    login(client, "viewer", "a brand new password")
    web.host.accounts.delete_user("viewer")
    assert client.get("/plugins", follow_redirects=False).status_code == 303


def test_logout_ends_the_session(web: Web, admin) -> None:
    client, token = admin
    assert client.post("/logout", data={"csrftoken": token}).url.path == "/login"
    assert client.get("/api/v1/plugins").status_code == 401


def test_a_bearer_request_is_judged_by_its_token_alone(web: Web, admin) -> None:
    client, _token = admin  # holds an admin session cookie
    answer = client.get("/api/v1/plugins", headers={"Authorization": "Bearer sai_wrong"})
    assert answer.status_code == 401
    assert client.get("/api/v1/plugins", headers=web.bearer("dashboard")).status_code == 403


# -- the commands -----------------------------------------------------------------------------


@pytest.fixture
def env(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", web.host.config.database_url)
    monkeypatch.setenv("SERVICES_AI_DATA_DIR", str(web.host.config.data_dir))
    reset_config()


def test_user_and_token_commands(web: Web, env: None) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["user", "create", "ops.person", "--role", "viewer"], input="long enough pw\n")
    assert made.exit_code == 0, made.output
    assert "ops.person" in runner.invoke(cli, ["user", "list"]).output
    again = runner.invoke(cli, ["user", "create", "ops.person", "--role", "viewer"], input="long enough pw\n")
    assert again.exit_code == 3 and "exists already" in again.output
    short = runner.invoke(cli, ["user", "create", "someone", "--role", "admin"], input="short\n")
    assert short.exit_code == 65 and "at least 8" in short.output
    bad_role = runner.invoke(cli, ["user", "create", "someone", "--role", "root"], input="long enough pw\n")
    assert bad_role.exit_code == 2
    created = runner.invoke(cli, ["token", "create", "--scope", "dashboard", "--name", "wallboard"])
    assert created.exit_code == 0
    secret = created.stdout.strip()
    assert re.fullmatch(r"sai_[A-Za-z0-9_-]{40,}", secret), created.stdout
    answer = web.new_client().get("/api/v1/widgets", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200
    listing = runner.invoke(cli, ["token", "list"]).output
    assert "wallboard" in listing and secret not in listing
    token_id = next(t.id for t in web.host.accounts.tokens() if t.name == "wallboard")
    assert runner.invoke(cli, ["token", "revoke", str(token_id)]).exit_code == 0
    time.sleep(web.host.config.web_cache_seconds)
    assert (
        web.new_client().get("/api/v1/widgets", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    missing = runner.invoke(cli, ["token", "revoke", "9999"])
    assert missing.exit_code == 4 and "token 9999" in missing.output


def test_a_new_user_can_log_in(web: Web, env: None) -> None:
    CliRunner().invoke(cli, ["user", "create", "newcomer", "--role", "admin"], input="their own password\n")
    client = TestClient(web.client.app, base_url="https://testserver")
    login(client, "newcomer", "their own password")
    assert client.get("/api/v1/plugins").status_code == 200


def test_the_session_key_is_long_or_unset(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from services_ai_plugins.config import Config
    from services_ai_plugins.web.security import session_key

    monkeypatch.setenv("SERVICES_AI_WEB_SESSION_KEY", "")  # compose's ${VAR:-}: unset
    config = Config(data_dir=tmp_path)
    assert config.web_session_key is None
    made = session_key(config)
    assert len(made) >= 32 and session_key(config) == made  # one key file, kept
    assert (tmp_path / "web-session.key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("SERVICES_AI_WEB_SESSION_KEY", "short")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Config(data_dir=tmp_path)
    monkeypatch.setenv("SERVICES_AI_WEB_SESSION_KEY", "k" * 40)
    assert session_key(Config(data_dir=tmp_path)) == b"k" * 40
