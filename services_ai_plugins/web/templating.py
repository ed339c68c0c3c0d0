"""Server-rendered pages: Jinja2 with autoescaping on, the page's CSRF token, flash messages
kept in the session, and plugin HTML wrapped for a sandboxed iframe."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from services_ai_plugins.web.auth import from_request
from services_ai_plugins.web.security import CSRF_FIELD, csrf_token

__all__ = ["flash", "framed", "render"]

TEMPLATES = Path(__file__).parent / "templates"
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
)
_FLASH = "flash"


def _when(value: object, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value[:19]
        return moment.strftime(fmt)
    return value.strftime(fmt) if isinstance(value, datetime) else str(value)


# The policy of a framed plugin document: sandboxed even if opened on its own (no script, an
# opaque origin), styles and images from the app alone, framed only by the app's own pages.
FRAME_CSP = (
    "sandbox; default-src 'none'; style-src 'self'; img-src 'self'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


def framed(html: str, status_code: int = 200) -> HTMLResponse:
    """A plugin's sanitised HTML as the whole document of an iframe that the page marks
    ``sandbox`` (no ``allow-scripts``, no ``allow-same-origin``): no script runs in it, it
    cannot read the app, it cannot cover the page, and it loads nothing from elsewhere."""
    return HTMLResponse(
        _frame_document(html),
        status_code=status_code,
        headers={"Content-Security-Policy": FRAME_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )


def _frame_document(html: str) -> str:
    """Bootstrap is linked so a widget keeps its look."""
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<link rel="stylesheet" href="/static/bootstrap/css/bootstrap.min.css">'
        '<link rel="stylesheet" href="/static/app.css">'
        f'</head><body class="plugin-frame">{html}</body></html>'
    )


templates.env.filters["when"] = _when


def flash(request: Request, level: str, text: str) -> None:
    """A message shown once, on the next page (after a redirect)."""
    messages = request.session.setdefault(_FLASH, [])
    messages.append([level, text[:600]])
    del messages[:-5]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    principal = from_request(request)
    messages = request.session.pop(_FLASH, []) if "session" in request.scope else []
    return templates.TemplateResponse(
        request,
        template,
        {
            "principal": principal,
            "csrf_token": csrf_token(request),
            "messages": messages,
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )


def csrf_field(token: str) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(token))


templates.env.globals["csrf_field"] = csrf_field
