"""The dashboard (every widget, each refreshed on its own interval by the page's script),
exports, the ops page and the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services_ai_plugins.errors import InputError
from services_ai_plugins.features.exports import FORMATS
from services_ai_plugins.web.auth import Admin, Dashboard, HostDep, Reader
from services_ai_plugins.web.pages.forms import back, blocking, read_form
from services_ai_plugins.web.templating import framed, render

__all__ = ["router"]

router = APIRouter()


@router.get("/dashboard")
async def dashboard(request: Request, host: HostDep, _: Dashboard) -> Response:
    widgets = await blocking(host.widgets.snapshots)
    return render(request, "dashboard.html", widgets=widgets)


@router.get("/dashboard/widgets/{plugin_id}/frame")
async def widget_frame(host: HostDep, _: Dashboard, plugin_id: str) -> Response:
    """One widget's stored HTML (already sanitised when it was rendered), framed."""
    snap = await blocking(host.widgets.snapshot, plugin_id)
    return framed(snap["html"])


@router.get("/ops")
async def ops(request: Request, host: HostDep, _: Reader) -> Response:
    info = await blocking(host.status.collect)
    return render(request, "ops.html", info=info)


@router.get("/audit")
async def audit(request: Request, host: HostDep, _: Reader) -> Response:
    before_text = request.query_params.get("before", "")
    before = int(before_text) if before_text.isdigit() else None
    plugin_id = request.query_params.get("plugin") or None
    entries = await blocking(host.audit.recent, 100, plugin_id, before)
    return render(request, "audit.html", entries=entries, plugin_id=plugin_id)


@router.get("/exports")
async def exports(request: Request, host: HostDep, _: Reader) -> Response:
    jobs = await blocking(host.exports.recent, 50)
    return render(request, "exports/list.html", jobs=jobs, formats=FORMATS)


@router.post("/exports")
async def start_export(request: Request, host: HostDep, who: Admin) -> Response:
    form = await read_form(request)
    kind = str(form.get("export_type") or "")
    since = str(form.get("since") or "") or None
    until = str(form.get("until") or "") or None
    try:
        export_id = await blocking(host.exports.create, kind, since, until, {}, who.actor)
    except InputError as exc:
        return back(request, "/exports", "danger", str(exc))
    await blocking(host.tasks.run_export, export_id)
    return back(request, f"/exports/{export_id}", "success", f"export {kind} started on a worker")


@router.get("/exports/{export_id}")
async def export(request: Request, host: HostDep, _: Reader, export_id: str) -> Response:
    job = await blocking(host.exports.get, export_id)
    return render(request, "exports/detail.html", job=job, formats=FORMATS)
