"""Logging in and out. Sessions are signed cookies (HttpOnly, SameSite=Strict, Secure unless
configured otherwise) naming the user and their session version: a password change or a
deleted user ends every session at once. Failed logins are rate-limited (``accounts.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services_ai_plugins.errors import AuthenticationError, InputError, RateLimitedError
from services_ai_plugins.web.auth import SESSION_KEY, HostDep, from_request
from services_ai_plugins.web.pages.forms import back, blocking, read_form, safe_next
from services_ai_plugins.web.security import check_csrf, new_csrf_token
from services_ai_plugins.web.templating import render

__all__ = ["router"]

router = APIRouter()


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=303)


@router.get("/login")
def login_page(request: Request) -> Response:
    if from_request(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return render(request, "login.html", next=safe_next(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request, host: HostDep) -> Response:
    await check_csrf(request)  # even before a login: logging a victim in as the attacker is an attack too
    form = await read_form(request)
    name, password = form.get("name"), form.get("password")
    target = safe_next(form.get("next"))
    if not isinstance(name, str) or not isinstance(password, str) or not name:
        return render(request, "login.html", 422, next=target, error="give a user name and a password")
    client = request.client.host if request.client else "unknown"
    try:
        user = await blocking(host.accounts.login, name, password, client)
    except (AuthenticationError, InputError) as exc:
        return render(request, "login.html", 401, next=target, error=str(exc), name=name)
    except RateLimitedError as exc:
        response = render(request, "login.html", 429, next=target, error=str(exc), name=name)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    request.session.clear()
    request.session[SESSION_KEY] = [user.id, user.session_version]
    new_csrf_token(request)
    return back(request, target)


@router.post("/logout")
async def logout(request: Request) -> Response:
    await check_csrf(request)
    request.session.clear()
    return back(request, "/login", "info", "logged out")
