"""``services-ai``: the command line for administrators, plugin authors and ops.

A thin client of the service layer (:class:`~services_ai_plugins.host.Host`): each command
reads its arguments, calls one service and prints the result. Errors are one line on standard
error with the exit status of ``cli/errors.py``, never a traceback (``SERVICES_AI_DEBUG=1``
shows one).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from services_ai_plugins import __version__
from services_ai_plugins.cli import errors
from services_ai_plugins.cli.output import fail
from services_ai_plugins.errors import ServicesAIError, one_line

__all__ = ["cli", "main"]


class ServicesAIGroup(click.Group):
    """Turns the host's errors into one line and an exit status, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ServicesAIError as exc:
            if os.environ.get("SERVICES_AI_DEBUG"):
                raise
            fail(errors.message(exc))
            sys.exit(errors.exit_status(exc))
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            fail("interrupted")
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("SERVICES_AI_DEBUG"):
                raise
            fail(f"unexpected {one_line(exc, 300)} (SERVICES_AI_DEBUG=1 shows the traceback)")
            sys.exit(errors.EX_SOFTWARE)


@click.group(cls=ServicesAIGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="services-ai")
def cli() -> None:
    """Services AI plugin host: manage plugins, publish events, run workers."""


def _register() -> None:
    from services_ai_plugins.cli import access, demo, events, features, ops, plugin, web

    for group in (plugin, events, features, ops, web, access, demo):
        for command in group.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="services-ai")
