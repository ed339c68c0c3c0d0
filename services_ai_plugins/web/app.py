"""The web app: ``create_app()`` builds it around one :class:`Host`.

Administrators use the pages (``pages/``), programs the JSON API (``api/``); both call the
host's services and nothing else, and neither loads plugin code: the host is built
``sandboxed``, so what must run plugin code (validating an upload, a plugin's settings page)
runs in a sandbox process, and widget refreshes, exports and replays are queued for workers.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from services_ai_plugins import __version__
from services_ai_plugins.config import Config, get_config
from services_ai_plugins.encoding import dumps
from services_ai_plugins.errors import ServicesAIError
from services_ai_plugins.host import Host
from services_ai_plugins.web import errors
from services_ai_plugins.web.auth import Principal, from_request
from services_ai_plugins.web.caching import RecentMap, WidgetList
from services_ai_plugins.web.security import BodyLimit, SecurityHeaders, derived, session_key
from services_ai_plugins.web.templating import render

__all__ = ["create_app"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


class JSON(JSONResponse):
    """JSON written by the host's one encoder (the same documents as the CLI's ``--json``)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def _bootstrap_dir() -> Path:
    """Bootstrap's files from the XStatic-Bootstrap distribution, found through its metadata
    (importing ``xstatic`` would pull in ``pkg_resources``)."""
    dist = importlib.metadata.distribution("XStatic-Bootstrap")
    for file in dist.files or []:
        if str(file).endswith("bootstrap/data/css/bootstrap.min.css"):
            return Path(str(dist.locate_file(file))).parents[1]
    raise RuntimeError("XStatic-Bootstrap is installed without bootstrap.min.css")  # pragma: no cover


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def create_app(host: Host | None = None, config: Config | None = None) -> FastAPI:
    """The ASGI app. ``host``: the services to call (default: one from the environment,
    sandboxed, queueing work for the workers)."""
    if host is None:
        host = Host(config or get_config(), sandboxed=True)
    config = host.config
    app = FastAPI(
        title="Services AI plugin host",
        version=__version__,
        description=(
            "Manage plugins, publish events, read results and widget snapshots. "
            "Send `Authorization: Bearer TOKEN` (make one with `services-ai token create --scope ...`)."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=JSON,
    )
    app.state.host = host
    app.state.tokens = RecentMap[str, tuple[int, str, str]](config.web_cache_seconds)
    app.state.widget_list = WidgetList(config.web_cache_seconds)

    key = session_key(config)
    # Added innermost first: the session inside the body cap, inside the headers.
    app.add_middleware(
        SessionMiddleware,
        secret_key=derived(key, "session"),
        session_cookie="sai_session",
        max_age=int(config.web_session_hours * 3600),
        same_site="strict",
        https_only=config.web_secure_cookies,
    )
    app.add_middleware(BodyLimit, config=config)
    app.add_middleware(SecurityHeaders)

    app.mount("/static/bootstrap", StaticFiles(directory=_bootstrap_dir()), name="bootstrap")
    app.mount("/static/swagger", StaticFiles(directory=str(swagger_ui_path)), name="swagger")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    _install_error_handlers(app)
    _install_meta_routes(app)

    from services_ai_plugins.web import api, pages

    app.include_router(api.router, prefix="/api/v1")
    app.include_router(pages.router)
    return app


def _any_principal(request: Request) -> Principal:
    principal = from_request(request)
    if principal is None:
        from services_ai_plugins.errors import AuthenticationError

        raise AuthenticationError("log in, or send Authorization: Bearer TOKEN")
    return principal


def _install_meta_routes(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        """For load balancers: says only that the process serves (no data, no login)."""
        return PlainTextResponse("ok")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: Annotated[Principal, Depends(_any_principal)]) -> JSONResponse:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema["components"].setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
            }
            app.openapi_schema["security"] = [{"bearer": []}]
        return JSONResponse(app.openapi_schema)

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        if from_request(request) is None:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return render(request, "docs.html")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServicesAIError)
    def service_error(request: Request, exc: ServicesAIError) -> Response:
        status = errors.status_of(exc)
        if _is_api(request):
            return JSON(errors.body(exc), status_code=status, headers=errors.headers(exc))
        if status == 401:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return render(request, "error.html", status_code=status, status=status, detail=str(exc))

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        found = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")),
                "reason": str(e.get("msg", "invalid")),
            }
            for e in exc.errors()
        ]
        detail = "; ".join(f"{f['field']}: {f['reason']}" if f["field"] else f["reason"] for f in found)
        if _is_api(request):
            return JSON({"error": "RequestError", "detail": detail, "fields": found}, status_code=422)
        return render(request, "error.html", status_code=422, status=422, detail=detail)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if _is_api(request):
            return JSON(
                {"error": "HTTPError", "detail": detail, "fields": []},
                status_code=exc.status_code,
                headers=exc.headers,
            )
        return render(
            request, "error.html", status_code=exc.status_code, status=exc.status_code, detail=detail
        )

    @app.exception_handler(Exception)
    def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        body = {"error": "InternalError", "detail": "unexpected error (logged on the server)", "fields": []}
        return JSON(body, status_code=500)
