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
        from rich.markup import escape

        from safewatch.config.secrets import redact_secrets

        # Several problems in a file (ConfigErrors) print one line each, all of them. Each goes
        # through the one secret mask (a message may quote a URL or a value with its password:
        # a database URL that did not parse, a driver's reason) and is printed as text, not
        # Rich markup (a "[/...]" in a reason was a MarkupError traceback instead of the line).
        text = exc.format() if isinstance(exc, ConfigError) else str(exc)
        for line in redact_secrets(text).splitlines():
            err.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
