"""What the page handlers share: reading a form, running a blocking service call off the
event loop, and redirecting back with a message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from services_ai_plugins.web.templating import flash

__all__ = ["back", "blocking", "read_form", "safe_next"]

T = TypeVar("T")
MAX_FIELDS = 200


async def read_form(request: Request) -> FormData:
    return await request.form(max_fields=MAX_FIELDS, max_files=2)


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Service calls touch the database (and sometimes a sandbox): not on the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


def back(request: Request, to: str, level: str | None = None, text: str = "") -> RedirectResponse:
    if level:
        flash(request, level, text)
    return RedirectResponse(to, status_code=303)


def safe_next(value: object, default: str = "/dashboard") -> str:
    """Where to go after logging in: only a path on this site (never ``//host`` or a URL)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value[:500]
