"""``services-ai web``: the app under uvicorn (httptools and uvloop where installed), with
several worker processes when asked; behind a reverse proxy, the proxy's
``X-Forwarded-*`` headers are trusted only from the addresses in ``FORWARDED_ALLOW_IPS``
(uvicorn's own setting; default 127.0.0.1)."""

from __future__ import annotations

import os

import uvicorn

from services_ai_plugins.config import Config

__all__ = ["app_factory", "serve"]


def app_factory() -> object:
    """What each uvicorn worker process imports: the app built from the environment."""
    from services_ai_plugins.web.app import create_app

    return create_app()


def serve(config: Config, host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "services_ai_plugins.web.server:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        server_header=False,
        access_log=True,
        log_level="info",
        # The app caps request bodies itself; these bound what a slow or idle client holds.
        timeout_keep_alive=5,
        limit_concurrency=1000,
        h11_max_incomplete_event_size=64 * 1024,
    )
