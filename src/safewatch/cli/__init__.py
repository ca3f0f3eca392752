"""The ``safewatch`` command line.

User errors (a bad site file, a missing video, a wrong model) are ``SafewatchError``s: they print as
one ``error: ...`` line and exit with status 2. ``--debug`` shows the traceback instead. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

from safewatch.cli import (  # noqa: F401 - registers the commands
    alerts,
    audit,
    backtest,
    calibrate,
    check,
    db,
    evidence,
    export_worker,
    models,
    retention,
    rules,
    rules_draft,
    serve,
    users,
    verify,
)
from safewatch.cli.app import app, err, state
from safewatch.errors import ConfigError, SafewatchError

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: run the app, turning user errors into one clear line."""
    try:
        app(prog_name="safewatch")
    except SafewatchError as exc:
        if state.debug:
            raise
        # Several problems in a file (ConfigErrors) print one line each, all of them.
        for line in (exc.format() if isinstance(exc, ConfigError) else str(exc)).splitlines():
            err.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
