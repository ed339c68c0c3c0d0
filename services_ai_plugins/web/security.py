"""What every request and response of the web app goes through: the signing key, response
headers (a Content Security Policy under which no plugin markup can run script, load images
from elsewhere or frame the app), a cap on request bodies checked before anything reads
them, and CSRF protection on every form.

The body cap and the header layer are small ASGI middlewares written here. Starlette's own
``RequestBodyLimitMiddleware`` takes one cap for every path and answers in plain text; this
one picks the cap by path (uploads get the archive cap) and answers in the API's error shape,
naming the limit. The headers are a fixed policy, not worth a dependency.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services_ai_plugins.config import Config
from services_ai_plugins.errors import ServicesAIError

__all__ = ["CSP", "BodyLimit", "CsrfError", "SecurityHeaders", "check_csrf", "csrf_token", "session_key"]

# Scripts, styles and fonts only from the app; images from the app (and data: URLs, which
# Bootstrap's own CSS uses for icons and which cannot carry anything out). Plugin HTML is shown
# inside sandboxed iframes that inherit this policy and add `img-src 'self'` of their own.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]


def session_key(config: Config) -> bytes:
    """``SERVICES_AI_WEB_SESSION_KEY``, else a random key kept in the data folder (mode 0600),
    made once and shared by every web process on this machine."""
    if config.web_session_key is not None:
        return config.web_session_key.get_secret_value().encode()
    path: Path = config.data_dir / "web-session.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        key = secrets.token_urlsafe(48).encode()
        fh.write(key)
    return key


def derived(key: bytes, purpose: str) -> str:
    """One key per use (sessions, CSRF), so neither signature can stand in for the other."""
    return hmac.new(key, purpose.encode(), hashlib.sha256).hexdigest()


class SecurityHeaders:
    """Adds the fixed security headers, and ``Cache-Control: no-store`` unless the response
    chose its own (the widget list revalidates with its ETag)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # The app's static files (Bootstrap, its own CSS) are public, and a sandboxed plugin
        # frame has an opaque origin: "same-origin" would keep its stylesheets from it.
        static = scope.get("path", "").startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if static:
                    headers.append((b"cross-origin-resource-policy", b"cross-origin"))
                names = {k.lower() for k, _ in headers}
                headers += [h for h in _HEADERS if h[0] not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses a request body over its cap with 413, before the app reads it: at once from
    ``Content-Length``, or as soon as a chunked body passes the cap. Plugin uploads get the
    archive cap (plus room for the form around it); everything else ``web_max_body_bytes``."""

    UPLOAD = re.compile(r"^(/api/v1)?/plugins(/upload|/[^/]+/upgrade)?/?$")
    FORM_ROOM = 64 * 1024

    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self.upload_cap = config.max_archive_bytes + self.FORM_ROOM
        self.cap = config.web_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        cap = self.upload_cap if self.UPLOAD.match(scope["path"]) else self.cap
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _plain(send, 400, "Content-Length is not a number")
                    return
                if declared > cap:
                    await _plain(send, 413, f"the request body is {declared} bytes; the limit here is {cap}")
                    return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _plain(send, 413, f"the request body passed the limit here ({cap} bytes)")


async def _plain(send: Send, status: int, text: str) -> None:
    """A short JSON error (the middlewares answer before any route does)."""
    import json

    payload = json.dumps({"error": "RequestError", "detail": text, "fields": []}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# -- CSRF ----------------------------------------------------------------------------------
#
# The synchronizer-token pattern: a random token kept in the (signed, HttpOnly) session, put in
# every form as ``csrftoken`` and in the page for scripts (``X-CSRFToken``), and compared on
# every unsafe request a session authenticates. Written here because the maintained ASGI
# middlewares do not fit: starlette-csrf reads the token only from a header (plain HTML forms
# cannot send one), asgi-csrf breaks on multipart bodies with current python-multipart, and
# fastapi-csrf-protect parses form bodies by string replacement. Requests with a bearer token
# need none (a browser never adds that header by itself, and such a request is judged by its
# token alone); with SameSite=Strict session cookies this is the second line, not the first.

CSRF_FIELD = "csrftoken"
CSRF_HEADER = "x-csrftoken"
_SESSION_CSRF = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class CsrfError(ServicesAIError):
    """An unsafe request from a browser session without the page's token."""


def csrf_token(request: Request) -> str:
    """The session's token, made on first use (the login form makes one before any login)."""
    token = request.session.get(_SESSION_CSRF)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session[_SESSION_CSRF] = token
    return token


def new_csrf_token(request: Request) -> None:
    """A fresh token (after logging in, so a token seen before cannot be used after)."""
    request.session[_SESSION_CSRF] = secrets.token_urlsafe(32)


async def check_csrf(request: Request) -> None:
    """Raise :class:`CsrfError` unless the request carries the session's token, in the
    ``X-CSRFToken`` header or the form field ``csrftoken``."""
    expected = request.session.get(_SESSION_CSRF)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(FORMS):
        field = (await request.form()).get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfError("the form's security token is missing or stale: reload the page and try again")
