"""Event pages: the latest events, one event with each plugin's result (and a failure's
traceback frames), and the dead letters with replay."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from schemas.events import EVENT_MODELS
from services_ai_plugins.web.auth import Admin, HostDep, Reader
from services_ai_plugins.web.pages.forms import back, blocking, read_form
from services_ai_plugins.web.templating import render

__all__ = ["router"]

router = APIRouter()
STATES = ("done", "pending", "failed")


@router.get("/events")
async def events(request: Request, host: HostDep, _: Reader) -> Response:
    kind = request.query_params.get("type") or None
    state = request.query_params.get("status") or None
    kind = kind if kind in EVENT_MODELS else None
    state = state if state in STATES else None
    rows = await blocking(host.events.recent, limit=100, event_type=kind, status=state)
    return render(
        request,
        "events/list.html",
        events=rows,
        kinds=sorted(EVENT_MODELS),
        states=STATES,
        kind=kind,
        state=state,
    )


@router.get("/events/{event_id}")
async def event(request: Request, host: HostDep, _: Reader, event_id: str) -> Response:
    view = await blocking(host.events.show, event_id)
    return render(request, "events/detail.html", event=view)


@router.get("/dead-letters")
async def dead_letters(request: Request, host: HostDep, _: Reader) -> Response:
    include = request.query_params.get("all") == "1"
    rows = await blocking(host.events.dead_letters, limit=200, include_replayed=include)
    return render(request, "events/dead_letters.html", letters=rows, include_replayed=include)


@router.post("/dead-letters/replay")
async def replay_dead(request: Request, host: HostDep, _: Admin) -> Response:
    form = await read_form(request)
    replay_all = form.get("all") == "true"
    try:
        ids = [int(v) for v in form.getlist("id") if isinstance(v, str)]
    except ValueError:
        return back(request, "/dead-letters", "danger", "dead-letter ids are numbers")
    if not ids and not replay_all:
        return back(request, "/dead-letters", "warning", "tick the dead letters to replay, or replay all")
    outcomes = await blocking(host.events.replay_dead, None if replay_all else ids, host.publisher.publish)
    done = [str(i) for i, e, err in outcomes if e]
    failed = [f"{i}: {err}" for i, e, err in outcomes if err]
    if failed:
        return back(
            request, "/dead-letters", "warning", f"replayed {len(done)}; not replayed: " + "; ".join(failed)
        )
    return back(request, "/dead-letters", "success", f"replayed {len(done)} dead letter(s)")
