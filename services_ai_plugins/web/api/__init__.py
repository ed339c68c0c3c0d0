"""The JSON API under ``/api/v1``: one module per noun, each calling the host's services."""

from __future__ import annotations

from fastapi import APIRouter

from services_ai_plugins.web.api import events, features, plugins
from services_ai_plugins.web.errors import ERROR_RESPONSES

__all__ = ["router"]

router = APIRouter(responses=ERROR_RESPONSES)
for module in (plugins, events, features):
    router.include_router(module.router)
