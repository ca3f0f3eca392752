"""The root ``safewatch`` Typer app and its consoles.

Command groups live in their own modules (``audit``, ``models``, ``rules``, ...) and register
themselves on :data:`app` when :mod:`safewatch.cli` imports them, so adding a command never means
editing a shared file beyond one import line.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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


def command() -> str:
    """How to run this same ``safewatch`` again, for commands printed as advice.

    ``safewatch`` when the one on ``PATH`` is this one; otherwise its path (``make run`` starts
    ``.venv/bin/safewatch``, which is not on ``PATH``: a bare ``safewatch`` there is "command not
    found", or another installation); ``python -m safewatch`` with this interpreter when run so.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or Path(argv0).name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m safewatch"
    running = os.path.abspath(argv0) if os.sep in argv0 else shutil.which(argv0)
    on_path = shutil.which("safewatch")
    if running is None or not os.path.exists(running):
        return "safewatch"
    if on_path is not None and os.path.samefile(on_path, running):
        return "safewatch"
    return shlex.quote(running)


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
