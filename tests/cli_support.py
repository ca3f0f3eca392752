"""Running the ``safewatch`` command line in-process (Typer's test runner), for the CLI tests."""

from __future__ import annotations

from typer.testing import CliRunner

from safewatch.cli import app

__all__ = ["invoke"]

_runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``safewatch *args``: its exit code and output. An exception other than the ``SystemExit``
    of a refused command is raised again here, so that a crash fails the test with its
    traceback instead of passing as a non-zero exit code."""
    result = _runner.invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output
