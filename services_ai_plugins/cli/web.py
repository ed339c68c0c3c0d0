"""``services-ai web``: the web app (admin pages, JSON API, event ingest) under uvicorn."""

from __future__ import annotations

import click

from services_ai_plugins.cli.common import host_from_env

__all__ = ["COMMANDS"]


@click.command()
@click.option("--host", "bind", default=None, help="Address to listen on [SERVICES_AI_WEB_HOST, 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Port [SERVICES_AI_WEB_PORT, 8000]."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Server processes [SERVICES_AI_WEB_WORKERS, 1].",
)
def web(bind: str | None, port: int | None, workers: int | None) -> None:
    """Serve the admin pages, the JSON API (/api/v1, /openapi.json, /docs) and event ingest."""
    from services_ai_plugins.web.server import serve

    host = host_from_env()  # the schema checked (or the SQLite default created) before serving
    config = host.config
    host.close()
    serve(config, bind or config.web_host, port or config.web_port, workers or config.web_workers)


COMMANDS = (web,)
