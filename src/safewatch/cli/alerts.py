"""``safewatch alerts``: send a test alert through a route, list and retry queued deliveries."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from safewatch.cli.app import app, out
from safewatch.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from safewatch.alerts.outbox import Outbox
    from safewatch.config.loader import LoadedSite

__all__ = ["alerts_app"]

alerts_app = typer.Typer(
    help="Alerts: test a route, list queued and dead deliveries, retry them.",
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Site file.")]


def _outbox(site: LoadedSite, *, read_only: bool = False) -> tuple[Outbox, Engine]:
    """The site's alert outbox; ``read_only`` (``alerts list``) opens the database as ``verify``
    does and never migrates it: a mistyped SQLite path said "outbox: empty" after creating an
    empty database there, now it is "database ... does not exist"."""
    from safewatch.alerts.outbox import Outbox
    from safewatch.storage import create_engine_for, ensure_schema

    database = site.config.storage.database
    engine = create_engine_for(database, site.base_dir, read_only=read_only)
    try:
        ensure_schema(engine, auto_upgrade=False if read_only else None, site_file=site.path)
    except BaseException:
        engine.dispose()
        raise
    return Outbox(engine), engine


@alerts_app.command("test")
def alerts_test(
    route: Annotated[str, typer.Argument(help="Route id from the site file's alerts.routes.")],
    config: ConfigOption,
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="Only this channel (repeatable).")
    ] = None,
    escalation: Annotated[
        bool, typer.Option("--escalation", help="Also the route's escalate_to channels.")
    ] = False,
) -> None:
    """Send a test alert through every channel of ROUTE now (nothing is queued or stored).

    Exits with status 1 if any channel failed, saying why.
    """
    from rich.markup import escape

    from safewatch.alerts.channels import DeliveryError
    from safewatch.alerts.message import probe_item
    from safewatch.alerts.service import build_plan
    from safewatch.config.loader import load_site
    from safewatch.config.secrets import redact_secrets

    site = load_site(config)
    alerts = site.config.alerts
    chosen = alerts.route(route)
    if chosen is None:
        known = ", ".join(r.id for r in alerts.routes) or "none"
        raise ConfigError(f"no alert route {route!r} in {config} (routes: {known})")
    names = list(chosen.channels) + (list(chosen.escalate_to) if escalation else [])
    if channel:
        unknown = sorted(set(channel) - set(names))
        if unknown:
            raise ConfigError(f"route {route!r} does not send to {', '.join(unknown)}")
        names = [name for name in names if name in channel]
    plan = build_plan(site)
    failed = 0
    try:
        for name in dict.fromkeys(names):
            sender = plan.channels[name]
            item = probe_item(chosen, name, time.time())
            try:
                message = plan.composer.compose(item, state=sender.needs_state)
                started = time.perf_counter()
                receipt = sender.send(message)
            except Exception as error:
                # Every channel is tried and reported on its own line: one channel's unexpected
                # exception must not hide whether the others work (nor print a traceback).
                failed += 1
                if isinstance(error, DeliveryError):
                    kind = "permanent" if error.permanent else "transient"
                    reason = str(error)
                else:
                    kind = "unexpected error"
                    reason = f"{type(error).__name__}: {error}"
                # The reason quotes the receiver's answer: masked (a receiver may echo the URL's
                # token or the signing secret) and printed as text, not Rich markup (an answer
                # with "[/docs]" in it was a MarkupError that also skipped the other channels).
                out.print(
                    f"[red]FAIL[/red] {escape(f'{name} ({sender.kind}, {kind}): ')}"
                    f"{escape(redact_secrets(reason))}",
                    soft_wrap=True,
                )
                continue
            ms = (time.perf_counter() - started) * 1000
            shown = f"{name} ({sender.kind}): {receipt} in {ms:.0f} ms, key {message.key}"
            out.print(f"[green]ok[/green]   {escape(redact_secrets(shown))}", soft_wrap=True)
    finally:
        for sender in plan.channels.values():
            sender.close()
    if failed:
        raise typer.Exit(1)


def _when(timestamp: float | None, tz: ZoneInfo) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz).strftime("%Y-%m-%d %H:%M:%S")


@alerts_app.command("list")
def alerts_list(
    config: ConfigOption,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Only this state (repeatable): pending, sending, delivered, dead, held, "
            "digested, cancelled. Default: pending, sending, held and dead.",
        ),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every state.")] = False,
    limit: Annotated[int, typer.Option(help="Most rows to show, newest first.")] = 50,
) -> None:
    """Show queued, held and dead deliveries (the dead-letter state) with their last error."""
    from safewatch.config.loader import load_site
    from safewatch.config.secrets import redact_secrets

    site = load_site(config)
    tz = ZoneInfo(site.config.site.timezone)
    outbox, engine = _outbox(site, read_only=True)
    wanted = None if every else (status or ["pending", "sending", "held", "dead"])
    try:
        counts = outbox.counts()
        try:
            items = outbox.list(wanted, limit=limit)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    finally:
        engine.dispose()
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "empty"
    out.print(f"outbox: {summary}", highlight=False)
    # Printed as text, not Rich markup: a receiver's answer quoted in last_error ("see [/docs]")
    # was a MarkupError traceback, and the list stopped there.
    for item in items:
        waiting = item.status in ("pending", "held", "sending")
        when = _when(item.due_at if waiting else item.delivered_at, tz)
        label = "due" if waiting else "at"
        out.print(
            f"{item.status:<9} {item.event:<10} {item.route_id} -> {item.channel}  "
            f"incident {item.incident_id or '-'}  tries {item.attempts}  {label} {when}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        out.print(f"          id {item.id}", highlight=False, markup=False, soft_wrap=True)
        if item.last_error:
            last_error = redact_secrets(item.last_error)
            out.print(
                f"          error: {last_error}", highlight=False, markup=False, soft_wrap=True
            )


@alerts_app.command("retry")
def alerts_retry(
    config: ConfigOption,
    ids: Annotated[
        list[str] | None, typer.Argument(help="Outbox ids (from `alerts list`).")
    ] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead delivery.")] = False,
) -> None:
    """Queue dead deliveries again (after fixing the channel's settings); a running
    ``safewatch serve`` sends them within its poll interval.

    Exits with status 1 if a named id is not a dead delivery (unknown, or in another state).
    """
    from safewatch.config.loader import load_site

    if not ids and not dead:
        raise ConfigError("name outbox ids to retry, or pass --dead for every dead delivery")
    if ids and dead:
        # It requeued every dead delivery, whatever ids were named.
        raise typer.BadParameter("name outbox ids or pass --dead, not both", param_hint="--dead")
    site = load_site(config)
    outbox, engine = _outbox(site)
    try:
        found: dict[str, str] = {}
        if ids is None:
            count = outbox.requeue(None, time.time())
        else:
            # "requeued 0", exit 0, was all an id that does not exist (a typo) or is not dead
            # got: each is named below, and the command fails.
            found = outbox.statuses(ids)
            named = [i for i in dict.fromkeys(ids) if found.get(i) == "dead"]
            count = outbox.requeue(named, time.time()) if named else 0
    finally:
        engine.dispose()
    out.print(f"requeued {count} dead deliver{'y' if count == 1 else 'ies'}")
    skipped = [i for i in dict.fromkeys(ids or ()) if found.get(i) != "dead"]
    for item_id in skipped:
        status = found.get(item_id)
        why = "no such delivery" if status is None else f"{status}, not dead"
        out.print(f"not requeued: {item_id} ({why})", highlight=False, markup=False)
    if skipped:
        raise typer.Exit(1)
