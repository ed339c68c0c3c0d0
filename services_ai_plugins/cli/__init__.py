"""``services-ai``: the command line for administrators, plugin authors and ops.

Every command calls the service layer (:mod:`services_ai_plugins.lifecycle.registry` and friends); the
only thing decided here is how results and errors are shown. Errors are one line on standard
error with a meaningful exit status, never a traceback (``SERVICES_AI_DEBUG=1`` shows one).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from services_ai_plugins import __version__
from services_ai_plugins.cli.output import fail
from services_ai_plugins.errors import ServicesAIError

EX_SOFTWARE = 70


class ServicesAIGroup(click.Group):
    """Turns the host's errors into one line and an exit status, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ServicesAIError as exc:
            if os.environ.get("SERVICES_AI_DEBUG"):
                raise
            fail(str(exc))
            sys.exit(exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            fail("interrupted")
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("SERVICES_AI_DEBUG"):
                raise
            text = " ".join(str(exc).split())[:300]
            fail(f"unexpected {type(exc).__name__}: {text} (SERVICES_AI_DEBUG=1 shows the traceback)")
            sys.exit(EX_SOFTWARE)


@click.group(cls=ServicesAIGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="services-ai")
def cli() -> None:
    """Services AI plugin host: manage plugins, publish events, run workers."""


def _register() -> None:
    from services_ai_plugins.cli import admin, plugin

    cli.add_command(plugin.plugin)
    cli.add_command(admin.db)
    cli.add_command(admin.secret_key)
    try:
        from services_ai_plugins.cli import pipeline
    except ImportError:  # pragma: no cover - the pipeline commands arrive with the pipeline
        return
    pipeline.register(cli)


_register()


def main() -> None:
    cli(prog_name="services-ai")
