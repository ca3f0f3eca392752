"""``safewatch db``: migrate the database schema and show where it stands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safewatch.advice import command_for_site
from safewatch.cli.app import app, err, out

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["db_app"]

db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Site file.")]


def _engine(config: Path) -> Engine:
    from safewatch.config.loader import load_site
    from safewatch.storage import create_engine_for

    site = load_site(config)
    return create_engine_for(site.config.storage.database, site.base_dir)


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOption,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Migrate the site's database to the newest schema (or --revision; never back)."""
    from safewatch.storage.engine import shown_url
    from safewatch.storage.migrate import upgrade

    engine = _engine(config)
    try:
        result = upgrade(engine, revision, site_file=config)
    finally:
        engine.dispose()
    shown = shown_url(engine.url)
    if result.stamped is not None:
        out.print(
            f"{shown}: existing tables recognised as revision {result.stamped}", soft_wrap=True
        )
    if result.before == result.after:
        out.print(f"{shown}: already at revision {result.after}", soft_wrap=True)
    else:
        out.print(f"{shown}: upgraded {result.before or 'empty'} -> {result.after}", soft_wrap=True)


@db_app.command("downgrade")
def db_downgrade(
    config: ConfigOption,
    revision: Annotated[str, typer.Option(help="Revision to go back to (see `db history`).")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask (needed without a terminal).")
    ] = False,
) -> None:
    """Migrate the site's database back to --revision, dropping what later revisions added.

    Lists the migrations it undoes and asks first (--yes does not ask). Run it with the newer
    safewatch, before installing the older one: only the newer one has the migrations to undo.
    """
    from safewatch.storage.engine import shown_url
    from safewatch.storage.migrate import downgrade, undone_by

    engine = _engine(config)
    try:
        # It drops tables and columns with their rows (below 0005 the users, below 0003 the
        # tamper-evidence chain), and a mistyped --revision went ahead unasked.
        undone = undone_by(engine, revision)
        if undone and not yes:
            shown = shown_url(engine.url)
            err.print(
                f"{shown}: going back to {revision} undoes, with what they added (tables, "
                "columns and their rows):",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            for step in undone:
                err.print(
                    f"  {step.id}  {step.message}", highlight=False, markup=False, soft_wrap=True
                )
            if not sys.stdin.isatty():
                raise typer.BadParameter(
                    "no terminal to confirm the downgrade: back up the database, then pass --yes",
                    param_hint="--yes",
                )
            typer.confirm("Downgrade (back up the database first)?", abort=True)
        result = downgrade(engine, revision, site_file=config)
    finally:
        engine.dispose()
    shown = shown_url(engine.url)
    if result.before == result.after:
        out.print(f"{shown}: already at revision {result.after}", soft_wrap=True)
    else:
        out.print(f"{shown}: downgraded {result.before} -> {result.after}", soft_wrap=True)


@db_app.command("current")
def db_current(config: ConfigOption) -> None:
    """Show the database's schema revision and whether it is the newest."""
    from safewatch.storage.engine import shown_url
    from safewatch.storage.migrate import current_revision, head_revision, history

    engine = _engine(config)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    shown = shown_url(engine.url)
    if current == head:
        out.print(f"{shown}: revision {current} (head)", soft_wrap=True)
    elif current is not None and current not in {r.id for r in history()}:
        # `db upgrade` cannot help: this safewatch has no migration past its head.
        out.print(
            f"{shown}: revision {current}, newer than this safewatch knows (head {head}): "
            "upgrade safewatch, or downgrade the database with the safewatch that upgraded it",
            soft_wrap=True,
        )
    else:
        out.print(
            f"{shown}: revision {current or 'none'}; head is {head}: run "
            f"`{command_for_site('db upgrade', config)}`",
            soft_wrap=True,
        )


@db_app.command("history")
def db_history() -> None:
    """List the schema migrations, newest first."""
    from safewatch.storage.migrate import history

    for revision in history():
        out.print(f"{revision.id}  {revision.message}", highlight=False, soft_wrap=True)
