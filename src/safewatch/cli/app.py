"""The root ``safewatch`` Typer app and its consoles.

Command groups live in their own modules (``audit``, ``models``, ``rules``, ...) and register
themselves on :data:`app` when :mod:`safewatch.cli` imports them, so adding a command never means
editing a shared file beyond one import line.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer
from rich.console import Console

from safewatch.advice import command

__all__ = ["app", "command", "err", "out", "state"]

app = typer.Typer(
    name="safewatch",
    help="Turn CCTV cameras into an active safety system.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

out = Console()
err = Console(stderr=True)


class _State:
    """Process-wide CLI switches, set once per invocation by the root callback."""

    debug: bool = False


state = _State()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more detail.")] = False,
) -> None:
    state.debug = debug or os.environ.get("SAFEWATCH_DEBUG") == "1"
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from safewatch.config.log_redaction import install_redaction

    install_redaction()
