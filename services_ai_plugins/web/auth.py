"""Who is asking, and what they may do.

Programs send ``Authorization: Bearer TOKEN``; people log in and carry a signed session
cookie. A request with an ``Authorization`` header is judged by that header alone (never
by a cookie it also carries). What each kind of credential allows:

==================  ======================================================
credential          allows
==================  ======================================================
token ``admin``     the whole API but publishing events
token ``dashboard`` reading widget snapshots
token ``publish``   ``POST /api/v1/events``
user ``admin``      every page and action (and the API, from the browser)
user ``viewer``     reading pages, the dashboard, read-only API calls
==================  ======================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from services_ai_plugins.errors import AccessDeniedError, AuthenticationError
from services_ai_plugins.features.accounts import token_digest
from services_ai_plugins.host import Host
from services_ai_plugins.web.security import SAFE_METHODS, check_csrf

__all__ = [
    "NEEDS",
    "Admin",
    "Dashboard",
    "HostDep",
    "Need",
    "Principal",
    "Publisher",
    "Reader",
    "from_request",
    "require",
]

Need = Literal["admin", "read", "dashboard", "publish"]
NEEDS: dict[Need, str] = {
    "admin": "an admin token or an admin user",
    "read": "an admin token or a logged-in user",
    "dashboard": "a dashboard or admin token, or a logged-in user",
    "publish": "a publish token",
}
_ALLOWS: dict[tuple[str, str], frozenset[Need]] = {
    ("token", "admin"): frozenset({"admin", "read", "dashboard"}),
    ("token", "dashboard"): frozenset({"dashboard"}),
    ("token", "publish"): frozenset({"publish"}),
    ("user", "admin"): frozenset({"admin", "read", "dashboard", "publish"}),
    ("user", "viewer"): frozenset({"read", "dashboard"}),
}
SESSION_KEY = "u"


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "token"]
    name: str
    grade: str  # a user's role, a token's scope

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return f"web:{self.name}" if self.kind == "user" else f"token:{self.name}"

    def allows(self, need: Need) -> bool:
        return need in _ALLOWS.get((self.kind, self.grade), frozenset())

    @property
    def is_admin(self) -> bool:
        return self.allows("admin")


def _host(request: Request) -> Host:
    host: Host = request.app.state.host
    return host


def from_request(request: Request) -> Principal | None:
    """The caller, or None when nothing identifies them. A bad bearer token raises."""
    cached = request.scope.get("services_ai.principal")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    principal = _identify(request)
    if principal is not None:
        request.scope["services_ai.principal"] = principal
    return principal


def _identify(request: Request) -> Principal | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationError("the Authorization header must be: Bearer TOKEN")
        secret = secret.strip()
        found = request.app.state.tokens.get(
            token_digest(secret), lambda: _host(request).accounts.token(secret)
        )
        if found is None:
            raise AuthenticationError("the token is not valid (wrong, or revoked)")
        token_id, scope, name = found
        return Principal("token", f"{token_id}" + (f" {name}" if name else ""), scope)
    session = request.scope.get("session") or {}
    entry = session.get(SESSION_KEY)
    if not isinstance(entry, list) or len(entry) != 2:
        return None
    user_id, version = entry
    if not isinstance(user_id, int) or not isinstance(version, int):
        return None
    user = _host(request).accounts.session_user(user_id, version)
    if user is None:
        session.clear()  # the user was deleted, or their password changed
        return None
    return Principal("user", user.name, user.role)


def require(need: Need) -> Any:
    """A dependency: the caller if they may do ``need``; 401 with no credentials, 403 with
    credentials that do not allow it, or (a browser session) without the page's CSRF token on
    an unsafe request."""

    async def dependency(request: Request) -> Principal:
        principal = await run_in_threadpool(from_request, request)
        if principal is None:
            raise AuthenticationError("log in, or send Authorization: Bearer TOKEN")
        if not principal.allows(need):
            raise AccessDeniedError(NEEDS[need], f"{principal.kind} {principal.grade}")
        if principal.kind == "user" and request.method not in SAFE_METHODS:
            await check_csrf(request)
        return principal

    return dependency


def _host_dependency(request: Request) -> Host:
    return _host(request)


HostDep = Annotated[Host, Depends(_host_dependency)]
Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("read"))]
Dashboard = Annotated[Principal, Depends(require("dashboard"))]
Publisher = Annotated[Principal, Depends(require("publish"))]
