"""``/api/v1/widgets``, ``/exports``, ``/status`` and ``/audit``: what the dashboard polls,
data exports, what ops look at, and who changed what."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from services_ai_plugins.encoding import dumps
from services_ai_plugins.features.exports import ExportView
from services_ai_plugins.features.widgets import WidgetView
from services_ai_plugins.web.auth import Admin, Dashboard, HostDep, Reader

__all__ = ["router"]

router = APIRouter()
MAX_ID = 2**63 - 1  # what a database id can be: a bigger number is refused, not sent to the database

# The browser revalidates every poll; shared caches never keep a copy.
REVALIDATE = "private, no-cache"


def _matches(request: Request, tag: str) -> bool:
    sent = request.headers.get("if-none-match")
    if not sent:
        return False
    return any(t.strip().removeprefix("W/") in (tag, "*") for t in sent.split(","))


def _tagged(request: Request, tag: str, build: Any, body: Any = None) -> Response:
    """304 when the client holds ``tag``; else the JSON of ``build()`` (or ``body(tag, make)``,
    which may hand back what it built for the same tag before)."""
    quoted = f'"{tag}"'
    headers = {"ETag": quoted, "Cache-Control": REVALIDATE}
    if _matches(request, quoted):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    content = body(tag, lambda: dumps(build())) if body is not None else dumps(build())
    return Response(content, media_type="application/json", headers=headers)


@router.get(
    "/widgets",
    tags=["dashboard"],
    summary="Widget snapshots (as widgets --json), with an ETag",
    responses={200: {"model": list[WidgetView]}, 304: {"description": "Not modified since the ETag sent"}},
)
def widgets(request: Request, host: HostDep, _: Dashboard) -> Response:
    """Read from the database alone (no plugin runs). Send the ``ETag`` back in
    ``If-None-Match``: while nothing changed the answer is 304 with no body."""
    service, cache = host.widgets, request.app.state.widget_list
    return _tagged(request, cache.tag.get(service.list_tag), service.snapshots, cache.body)


@router.get(
    "/widgets/{plugin_id}",
    tags=["dashboard"],
    summary="One widget snapshot, with an ETag",
    responses={200: {"model": WidgetView}, 304: {"description": "Not modified since the ETag sent"}},
)
def widget(request: Request, host: HostDep, _: Dashboard, plugin_id: str) -> Response:
    snap = host.widgets.snapshot(plugin_id)
    tag = hashlib.sha256(f"{snap['etag']}:{snap['attempted_at']}:{snap['status']}".encode()).hexdigest()[:32]
    return _tagged(request, tag, lambda: snap)


@router.post(
    "/widgets/{plugin_id}/refresh",
    tags=["dashboard"],
    status_code=status.HTTP_202_ACCEPTED,
    summary="Render a widget now (on a worker)",
)
def refresh_widget(host: HostDep, _: Admin, plugin_id: str) -> dict[str, Any]:
    host.registry.show(plugin_id)  # 404 for an unknown plugin
    host.tasks.refresh_widget(plugin_id)
    return {"queued": True, "plugin_id": plugin_id}


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    export_type: str = Field(min_length=1, max_length=40, examples=["leads"])
    since: str | None = Field(default=None, examples=["2026-01-01"])
    until: str | None = Field(default=None, examples=["2026-01-31"])
    filters: dict[str, Any] = Field(default_factory=dict)


@router.post("/exports", tags=["exports"], status_code=status.HTTP_202_ACCEPTED, response_model=ExportView)
def start_export(host: HostDep, who: Admin, body: ExportRequest) -> ExportView:
    """Start an export on an exports worker; poll ``GET /exports/{id}`` until ``done``."""
    export_id = host.exports.create(body.export_type, body.since, body.until, body.filters, who.actor)
    host.tasks.run_export(export_id)
    return host.exports.get(export_id)


@router.get("/exports", tags=["exports"], response_model=list[ExportView])
def list_exports(host: HostDep, _: Reader) -> list[ExportView]:
    return host.exports.recent()


@router.get("/exports/{export_id}", tags=["exports"], response_model=ExportView)
def show_export(host: HostDep, _: Reader, export_id: str) -> ExportView:
    return host.exports.get(export_id)


@router.get(
    "/exports/{export_id}/download",
    tags=["exports"],
    responses={200: {"content": {"text/csv": {}, "application/json": {}}}},
)
def download_export(
    host: HostDep,
    _: Reader,
    export_id: str,
    format: Annotated[Literal["csv", "json"], Query()] = "csv",
) -> Response:
    """A finished export as CSV (cells that a spreadsheet would run as formulas are quoted) or
    JSON."""
    job = host.exports.get(export_id)
    text = host.exports.render(export_id, format)
    name = f"{job['export_type']}-{export_id[:8]}.{format}"
    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    return Response(text, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/status", tags=["ops"], summary="As status --json")
def get_status(host: HostDep, _: Reader) -> dict[str, Any]:
    return host.status.collect()


@router.get("/audit", tags=["ops"], summary="Who changed what, newest first")
def audit(
    host: HostDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    plugin_id: str | None = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> list[dict[str, Any]]:
    return host.audit.recent(limit, plugin_id, before)
