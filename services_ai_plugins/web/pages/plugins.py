"""Plugin pages: the list, upload, the detail page as the plan lays it out (information,
permission toggles, the plugin's own settings page, the typed settings form, enable/disable,
uninstall behind a confirmation dialog), versions, and per-plugin activity with replay."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile

from services_ai_plugins.dates import parse_moment
from services_ai_plugins.errors import (
    ArchiveError,
    InputError,
    ManifestError,
    PluginExistsError,
    PluginLoadError,
    PluginStateError,
    ServicesAIError,
    SettingsError,
)
from services_ai_plugins.web.auth import Admin, HostDep, Reader
from services_ai_plugins.web.errors import status_of
from services_ai_plugins.web.pages.forms import back, blocking, read_form
from services_ai_plugins.web.templating import framed, render
from services_ai_plugins.web.uploads import saved_upload

__all__ = ["router"]

router = APIRouter(prefix="/plugins")
# What an upload can be refused for: shown on the form, next to the file field.
REFUSALS = (ArchiveError, ManifestError, PluginLoadError, PluginExistsError, PluginStateError, InputError)


@router.get("")
async def plugin_list(request: Request, host: HostDep, _: Reader) -> Response:
    plugins = await blocking(host.registry.plugins)
    return render(request, "plugins/list.html", plugins=plugins)


@router.get("/upload")
def upload_page(request: Request, _: Admin) -> Response:
    return render(request, "plugins/upload.html")


def _install(host: Any, upload: Any, actor: str, plugin_id: str | None) -> Any:
    with saved_upload(upload, host.config.max_archive_bytes) as path:
        if plugin_id is None:
            return host.registry.install(path, actor=actor)
        return host.registry.upgrade(plugin_id, path, actor=actor)


@router.post("/upload")
async def upload(request: Request, host: HostDep, who: Admin) -> Response:
    form = await read_form(request)
    try:
        result = await blocking(_install, host, _file(form), who.actor, None)
    except REFUSALS as exc:
        return render(request, "plugins/upload.html", status_of(exc), error=str(exc))
    notes = "; ".join(result.warnings)
    text = f"installed {result.plugin.name} {result.plugin.version}: disabled, every permission off"
    return back(request, f"/plugins/{result.plugin.id}", "success", text + (f" ({notes})" if notes else ""))


def _file(form: FormData) -> UploadFile | None:
    value = form.get("file")
    return value if isinstance(value, UploadFile) else None


@router.get("/{plugin_id}")
async def detail(request: Request, host: HostDep, _: Reader, plugin_id: str) -> Response:
    plugin = await blocking(host.registry.show, plugin_id)
    return render(request, "plugins/detail.html", plugin=plugin)


@router.get("/{plugin_id}/settings-page")
async def settings_page(host: HostDep, who: Admin, plugin_id: str) -> Response:
    """The plugin's own ``settings_page``, rendered now in its sandbox, sanitised, framed."""
    try:
        outcome = await blocking(host.registry.render_settings_page, plugin_id, who.actor)
    except ServicesAIError as exc:
        return framed(f"<div class='alert alert-warning'>{escape(str(exc))}</div>", status_of(exc))
    if outcome is None:
        return framed("<p class='text-body-secondary'>This plugin has no settings page.</p>")
    if not outcome.ok:
        return framed(
            f"<div class='alert alert-warning'>The settings page failed: {escape(outcome.error or '')}</div>"
        )
    return framed(str(outcome.result))


@router.post("/{plugin_id}/enable")
async def enable(request: Request, host: HostDep, who: Admin, plugin_id: str) -> Response:
    return await _act(request, plugin_id, host.registry.enable, f"enabled {plugin_id}", actor=who.actor)


@router.post("/{plugin_id}/disable")
async def disable(request: Request, host: HostDep, who: Admin, plugin_id: str) -> Response:
    return await _act(request, plugin_id, host.registry.disable, f"disabled {plugin_id}", actor=who.actor)


@router.post("/{plugin_id}/rollback")
async def rollback(request: Request, host: HostDep, who: Admin, plugin_id: str) -> Response:
    return await _act(request, plugin_id, host.registry.rollback, f"rolled {plugin_id} back", actor=who.actor)


@router.post("/{plugin_id}/permissions/{name}")
async def toggle_permission(
    request: Request, host: HostDep, who: Admin, plugin_id: str, name: str
) -> Response:
    form = await read_form(request)
    grant = form.get("granted") == "true"
    change = host.registry.grant if grant else host.registry.revoke
    words = f"granted {name}" if grant else f"revoked {name}"
    return await _act(request, plugin_id, change, words, name, actor=who.actor)


async def _act(request: Request, plugin_id: str, fn: Any, words: str, *args: Any, actor: str) -> Response:
    """Run one registry change and go back to the plugin's page with what happened."""
    to = f"/plugins/{plugin_id}"
    try:
        result = await blocking(fn, plugin_id, *args, actor=actor)
    except ServicesAIError as exc:
        if status_of(exc) == 404:
            raise
        return back(request, to, "danger", str(exc))
    notes = "; ".join(result.warnings)
    return back(request, to, "warning" if notes else "success", words + (f" ({notes})" if notes else ""))


@router.post("/{plugin_id}/settings")
async def save_settings(request: Request, host: HostDep, who: Admin, plugin_id: str) -> Response:
    form = await read_form(request)
    plugin = await blocking(host.registry.show, plugin_id)
    values: dict[str, Any] = {}
    for spec in plugin.settings or []:
        sent = [v for v in form.getlist(spec["name"]) if isinstance(v, str)]
        if spec.get("type") == "password" and not any(sent):
            continue  # a secret's field is never filled in: left empty, it keeps what is stored
        if sent:
            # A checkbox comes as a hidden "false" followed by "true" when ticked: the last wins.
            values[spec["name"]] = sent[-1]
    try:
        await blocking(host.registry.set_settings, plugin_id, values, actor=who.actor, from_text=True)
    except SettingsError as exc:
        plugin = await blocking(host.registry.show, plugin_id)
        field_errors = {e.field: e.reason for e in exc.errors}
        return render(
            request,
            "plugins/detail.html",
            422,
            plugin=plugin,
            field_errors=field_errors,
            sent=values,
            error=str(exc),
        )
    return back(request, f"/plugins/{plugin_id}", "success", "settings saved")


@router.post("/{plugin_id}/upgrade")
async def upgrade(request: Request, host: HostDep, who: Admin, plugin_id: str) -> Response:
    form = await read_form(request)
    try:
        result = await blocking(_install, host, _file(form), who.actor, plugin_id)
    except REFUSALS as exc:
        return back(request, f"/plugins/{plugin_id}", "danger", f"upgrade refused: {exc}")
    return back(request, f"/plugins/{plugin_id}", "success", f"upgraded to {result.plugin.version}")


@router.post("/{plugin_id}/uninstall")
async def uninstall(request: Request, host: HostDep, who: Admin, plugin_id: str) -> Response:
    form = await read_form(request)
    purge = form.get("purge") == "true"
    result = await blocking(host.registry.uninstall, plugin_id, actor=who.actor, purge=purge)
    notes = "; ".join(result.warnings)
    text = f"uninstalled {result.plugin.name}" + (" and purged its results" if purge else "")
    return back(request, "/plugins", "success", text + (f" ({notes})" if notes else ""))


@router.get("/{plugin_id}/activity")
async def activity(request: Request, host: HostDep, _: Reader, plugin_id: str) -> Response:
    plugin = await blocking(host.registry.show, plugin_id)
    stats = await blocking(host.activity.plugin, plugin_id)
    return render(request, "plugins/activity.html", plugin=plugin, stats=stats)


@router.post("/{plugin_id}/replay")
async def replay(request: Request, host: HostDep, who: Admin, plugin_id: str) -> Response:
    form = await read_form(request)
    to = f"/plugins/{plugin_id}/activity"
    try:
        since = parse_moment(str(form.get("since") or ""), "since")
        until = parse_moment(str(form.get("until") or "") or None, "until")
    except InputError as exc:
        return back(request, to, "danger", str(exc))
    if since is None:
        return back(request, to, "danger", "since: give a date (YYYY-MM-DD)")
    await blocking(host.registry.show, plugin_id)
    await blocking(host.tasks.replay, plugin_id, since, until, form.get("include_failed") == "true")
    return back(request, to, "success", f"replay of {plugin_id} since {since:%Y-%m-%d %H:%M} queued")
