"""``/api/v1/plugins``: install, upgrade, roll back, enable, grant, configure, uninstall."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Query, UploadFile, status
from pydantic import BaseModel, ConfigDict, StrictBool

from services_ai_plugins.dates import parse_moment
from services_ai_plugins.errors import InputError
from services_ai_plugins.lifecycle.views import PluginView
from services_ai_plugins.web.auth import Admin, HostDep, Reader
from services_ai_plugins.web.uploads import saved_upload

__all__ = ["router"]

router = APIRouter(prefix="/plugins", tags=["plugins"])
PluginId = Annotated[str, "the plugin id (from plugin list)"]
ZipFile = Annotated[UploadFile, File(description="The plugin ZIP.")]


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    granted: StrictBool


class Replay(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: str
    until: str | None = None
    include_failed: StrictBool = False


@router.get("", response_model=list[PluginView], summary="Installed plugins (as plugin list --json)")
def list_plugins(host: HostDep, _: Reader) -> list[PluginView]:
    return host.registry.plugins()


@router.post(
    "", response_model=PluginView, status_code=status.HTTP_201_CREATED, summary="Install a plugin ZIP"
)
def install(host: HostDep, who: Admin, file: ZipFile) -> PluginView:
    """Validated in a sandbox, then installed disabled with every permission off."""
    with saved_upload(file, host.config.max_archive_bytes) as path:
        return host.registry.install(path, actor=who.actor).plugin


@router.get("/{plugin_id}", response_model=PluginView, summary="One plugin (as plugin show --json)")
def show(host: HostDep, _: Reader, plugin_id: PluginId) -> PluginView:
    return host.registry.show(plugin_id)


@router.post("/{plugin_id}/upgrade", response_model=PluginView, summary="Replace the code with a newer ZIP")
def upgrade(host: HostDep, who: Admin, plugin_id: PluginId, file: ZipFile) -> PluginView:
    with saved_upload(file, host.config.max_archive_bytes) as path:
        return host.registry.upgrade(plugin_id, path, actor=who.actor).plugin


@router.post("/{plugin_id}/rollback", response_model=PluginView, summary="Go back to the previous version")
def rollback(host: HostDep, who: Admin, plugin_id: PluginId) -> PluginView:
    return host.registry.rollback(plugin_id, actor=who.actor).plugin


@router.post("/{plugin_id}/enable", response_model=PluginView, summary="Enable")
def enable(host: HostDep, who: Admin, plugin_id: PluginId) -> PluginView:
    return host.registry.enable(plugin_id, actor=who.actor).plugin


@router.post("/{plugin_id}/disable", response_model=PluginView, summary="Disable (settings and grants kept)")
def disable(host: HostDep, who: Admin, plugin_id: PluginId) -> PluginView:
    return host.registry.disable(plugin_id, actor=who.actor).plugin


@router.put(
    "/{plugin_id}/permissions/{name}", response_model=PluginView, summary="Grant or revoke a permission"
)
def set_permission(host: HostDep, who: Admin, plugin_id: PluginId, name: str, body: Grant) -> PluginView:
    registry = host.registry
    change = registry.grant if body.granted else registry.revoke
    return change(plugin_id, name, actor=who.actor).plugin


@router.get("/{plugin_id}/settings", summary="Settings by name (secrets masked)")
def get_settings(host: HostDep, _: Reader, plugin_id: PluginId) -> dict[str, Any]:
    return {r["name"]: r["value"] for r in host.registry.get_settings(plugin_id)}


@router.put("/{plugin_id}/settings", response_model=PluginView, summary="Set settings (all or none)")
def put_settings(
    host: HostDep,
    who: Admin,
    plugin_id: PluginId,
    values: Annotated[dict[str, Any], Body(examples=[{"min_score": 70, "notify_sales": False}])],
) -> PluginView:
    """Typed JSON values (a number as a number). Every value is checked first; one bad value
    answers 422 naming it, and nothing is written. A secret sent back as ``********`` or
    empty keeps its stored value."""
    return host.registry.set_settings(plugin_id, values, actor=who.actor).plugin


@router.delete("/{plugin_id}", response_model=PluginView, summary="Uninstall")
def uninstall(
    host: HostDep,
    who: Admin,
    plugin_id: PluginId,
    purge: Annotated[bool, Query(description="Also delete its stored results and export rows.")] = False,
) -> PluginView:
    return host.registry.uninstall(plugin_id, actor=who.actor, purge=purge).plugin


@router.get("/{plugin_id}/activity", summary="Recent results, error rate, durations, breaker")
def activity(host: HostDep, _: Reader, plugin_id: PluginId) -> dict[str, Any]:
    host.registry.show(plugin_id)  # 404 for an unknown plugin
    return host.activity.plugin(plugin_id)


@router.post("/{plugin_id}/replay", status_code=status.HTTP_202_ACCEPTED, summary="Backfill on a worker")
def replay(host: HostDep, who: Admin, plugin_id: PluginId, body: Replay) -> dict[str, Any]:
    """Queue a replay: the plugin is called for stored events since ``since`` that it has no
    result for (and, with ``include_failed``, those it failed on)."""
    since = parse_moment(body.since, "since")
    until = parse_moment(body.until, "until")
    if since is None:
        raise InputError("since", "give a date (YYYY-MM-DD[THH:MM])")
    host.registry.show(plugin_id)
    host.tasks.replay(plugin_id, since, until, body.include_failed)
    return {"queued": True, "plugin_id": plugin_id, "since": since, "until": until}
