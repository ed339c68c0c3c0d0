"""The administrators' pages (server-rendered, Bootstrap 5): one module per area. Every page
needs a logged-in user (viewers read, admins act); every form carries a CSRF token; every
action redirects back with a message (post/redirect/get)."""

from __future__ import annotations

from fastapi import APIRouter

from services_ai_plugins.web.pages import events, ops, plugins, session

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for module in (session, plugins, events, ops):
    router.include_router(module.router)
